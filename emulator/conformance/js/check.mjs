// Drive the emulator with the official JS SDK (@fly/sprites 0.1.0 from npm, unchanged), as
// sdk_check.py does with the Python one.
//
// Usage: node emulator/conformance/js/check.mjs target/debug/sprites-emulator
//   (install first: `npm ci` in emulator/conformance/js; scripts/ensure-tools does it)
//
// Starts the emulator binary (`--port 0 --speed 0`), points `new SpritesClient(token, {baseURL})`
// at it and walks sprites CRUD and pagination, exec (argv, a shell pipe, heredocs, stdin),
// filesystem, services, checkpoints and delete through the SDK's own methods. Prints
// `sdk-js-conformance: N passed, M failed` last and exits non-zero on any failure. The emulator
// is always killed.
//
// Where this SDK reads the API differently from the Python one or from the reference
// (/work/shared/reference/sprites-api.md), the emulator follows the reference and the check
// asserts what this SDK does with it, with a comment saying so ("SDK behaviour").

import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { randomBytes } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';

// The SDK opens exec sockets with the global WebSocket (undici's, which accepts `headers`).
// Node 22+ has it by default; Node 20/21 only behind a flag, so re-run under that flag.
// (The package says node >= 24; nothing else it uses is missing from Node 20.)
if (typeof globalThis.WebSocket === 'undefined') {
  const again = spawnSync(process.execPath, ['--experimental-websocket', ...process.argv.slice(1)], {
    stdio: 'inherit',
  });
  process.exit(again.status ?? 1);
}

// The SDK talks to 127.0.0.1 only; never route that through a proxy.
process.env.NO_PROXY = process.env.no_proxy = '127.0.0.1,localhost';

const TOKEN = 'conformance-token';

let sdk;
try {
  sdk = await import('@fly/sprites');
} catch (e) {
  console.log(`FAIL load @fly/sprites (run npm ci in emulator/conformance/js): ${e.message}`);
  console.log('sdk-js-conformance: 0 passed, 1 failed');
  process.exit(1);
}
const { SpritesClient, APIError, ExecError, FilesystemError } = sdk;

async function startEmulator(binary) {
  const proc = spawn(binary, ['--port', '0', '--speed', '0', '--token', TOKEN, '--setup-secs', '1'], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const lines = createInterface({ input: proc.stdout });
  const timer = setTimeout(() => proc.kill('SIGKILL'), 20_000);
  try {
    for await (const line of lines) {
      const m = /listening on (http:\/\/\S+)/.exec(line);
      if (m) return { proc, baseURL: m[1] };
    }
  } finally {
    clearTimeout(timer);
  }
  proc.kill('SIGKILL');
  throw new Error('emulator did not print its URL');
}

function expect(cond, what) {
  if (!cond) throw new Error(`expectation failed: ${what}`);
}

function eq(actual, expected, what) {
  if (!isDeepStrictEqual(actual, expected)) {
    throw new Error(`${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
  }
}

/** Resolves to the error `promise` rejects with; fails when it resolves. */
async function rejection(promise, what) {
  try {
    await promise;
  } catch (e) {
    return e;
  }
  throw new Error(`${what}: expected an error`);
}

async function drain(stream) {
  const events = [];
  for await (const event of stream) events.push(event);
  return events;
}

async function runChecks(baseURL, results) {
  const client = new SpritesClient(TOKEN, { baseURL, timeout: 30_000 });
  const name = `sdk-js-${randomBytes(4).toString('hex')}`;
  const sprite = client.sprite(name);
  const extras = [0, 1, 2].map((i) => `${name}-extra-${i}`);

  const checks = [
    ['sprites.create', async () => {
      const s = await client.createSprite(name, { urlSettings: { auth: 'public' }, labels: ['sdk'] });
      eq(s.name, name, 'name echoed');
      eq(s.status, 'cold', 'a new sprite is cold');
      eq(s.url, `${baseURL}/_sprite/${name}`, 'url');
      eq(s.urlSettings.auth, 'public', 'urlSettings.auth');
      expect(s.createdAt instanceof Date && !Number.isNaN(s.createdAt.getTime()), 'createdAt parses');
    }],
    ['sprites.create duplicate -> APIError 409', async () => {
      const e = await rejection(client.createSprite(name), 'duplicate create');
      expect(e instanceof APIError, `APIError, got ${e}`);
      eq(e.statusCode, 409, 'status');
    }],
    ['sprites.get', async () => {
      const s = await client.getSprite(name);
      expect(s.id && s.id.startsWith('sprite-'), `id ${s.id}`);
      eq(s.labels, ['sdk'], 'labels');
      eq(s.urlSettings.auth, 'public', 'urlSettings.auth');
    }],
    ['sprites.get missing -> APIError 404', async () => {
      const e = await rejection(client.getSprite('no-such-sprite'), 'get missing');
      expect(e instanceof APIError, `APIError, got ${e}`);
      eq(e.statusCode, 404, 'status');
      // SDK behaviour: parseAPIError reads the body's `error` field as a machine code, so the
      // reference's `{"error":"sprite not found"}` lands in errorCode (and, with no `message`
      // field, in the message too). The Python SDK raises NotFoundError with the same text.
      eq(e.errorCode, 'sprite not found', 'errorCode');
      eq(e.message, 'sprite not found', 'message');
    }],
    ['sprites.update', async () => {
      const s = await client.updateSprite(name, { labels: ['sdk', 'updated'] });
      eq(s.labels, ['sdk', 'updated'], 'labels');
    }],
    ['sprites.list pagination', async () => {
      for (const extra of extras) await client.createSprite(extra);
      const prefix = `${name}-extra-`;
      const page = await client.listSprites({ prefix, maxResults: 2 });
      eq(page.sprites.map((s) => s.name), extras.slice(0, 2), 'page 1');
      expect(page.hasMore === true && typeof page.nextContinuationToken === 'string', 'hasMore + token');
      const rest = await client.listSprites({ prefix, continuationToken: page.nextContinuationToken });
      eq(rest.sprites.map((s) => s.name), extras.slice(2), 'page 2');
      eq(rest.hasMore, false, 'last page');
      // SDK behaviour: the reference's `next_continuation_token: null` on the last page comes
      // through as null (the Python SDK gives None); listAllSprites stops on hasMore=false.
      eq(rest.nextContinuationToken, null, 'no token on the last page');
      // SDK behaviour: listSprites maps entries to plain camelCase objects (urlSettings,
      // createdAt as Date), while listAllSprites returns Sprite handles; it asks for
      // max_results=50 per page (the Python SDK asks for 100, which the API clamps to 50).
      expect(page.sprites[0].createdAt instanceof Date, 'list entries parse dates');
      const all = await client.listAllSprites(prefix);
      eq(all.map((s) => s.name), extras, 'listAllSprites paginates');
      expect(typeof all[0].execFile === 'function', 'listAllSprites returns Sprite handles');
    }],
    ['exec argv stdout + exit 0', async () => {
      const r = await sprite.execFile('echo', ['hello', 'world']);
      eq(r, { stdout: 'hello world\n', stderr: '', exitCode: 0 }, 'result');
      // sprite.exec splits a command line on whitespace (no shell) and runs it as argv.
      const split = await sprite.exec('echo split  words');
      eq(split.stdout, 'split words\n', 'exec splits on whitespace');
    }],
    ['exec non-zero exit -> ExecError with stderr', async () => {
      const e = await rejection(sprite.execFile('bash', ['-c', 'echo out; echo oops >&2; exit 3']), 'exit 3');
      expect(e instanceof ExecError, `ExecError, got ${e}`);
      eq([e.exitCode, e.stdout, e.stderr], [3, 'out\n', 'oops\n'], 'exit code, stdout, stderr');
    }],
    ['exec env + cwd', async () => {
      const env = await sprite.execFile('printenv', ['GREETING'], { env: { GREETING: 'hi' } });
      eq(env.stdout, 'hi\n', 'printenv');
      const pwd = await sprite.execFile('pwd', [], { cwd: '/tmp' });
      eq(pwd.stdout, '/tmp\n', 'pwd');
    }],
    ['exec over plain HTTP (execFileHTTP)', async () => {
      eq(await sprite.execFileHTTP('true', []), { stdout: '', stderr: '', exitCode: 0 }, 'exit 0');
      const e = await rejection(sprite.execFileHTTP('false', []), 'exit 1');
      expect(e instanceof ExecError, `ExecError, got ${e}`);
      eq(e.exitCode, 1, 'exit code');
      // SDK behaviour, not asserted because it depends on TCP timing: execFileHTTP takes each
      // read of the body for one frame, but Node's fetch hands over whatever arrived together,
      // so output followed at once by the exit frame (two HTTP chunks, as the API sends them)
      // usually reads as one stdout frame and the call fails with "did not include an exit
      // frame". The SDK's own comment says so and recommends the WebSocket methods. The
      // commands above print nothing, so their one frame is always read alone.
    }],
    ['exec stdin through spawn + EOF', async () => {
      // The SDK always opens exec with stdin=true; ending cmd.stdin sends the 0x04 EOF frame.
      const cmd = sprite.spawn('cat', []);
      const out = [];
      cmd.stdout.on('data', (chunk) => out.push(chunk));
      await once(cmd, 'spawn');
      cmd.stdin.write('hello ');
      cmd.stdin.end('world\n');
      const code = await cmd.wait();
      eq([code, Buffer.concat(out).toString()], [0, 'hello world\n'], 'exit code and echoed stdin');
    }],
    ['exec shell pipe', async () => {
      const r = await sprite.execFile('bash', ['-c', "printf 'alpha\\nbeta\\ngamma\\n' | grep -v beta | tail -n 1"]);
      eq(r.stdout, 'gamma\n', 'pipeline output');
      // A pipeline's status is its last command's.
      const e = await rejection(sprite.execFile('bash', ['-c', 'echo ok | grep -q nomatch']), 'grep -q fails');
      eq(e.exitCode, 1, 'pipeline exit status');
    }],
    ['exec heredocs (quoted and unquoted)', async () => {
      const script = [
        'NAME=sprite',
        'mkdir -p /home/sprite/heredoc',
        "cat > /home/sprite/heredoc/quoted.txt <<'EOF'",
        'name=$NAME',
        'EOF',
        'cat <<EOF',
        'name=$NAME',
        'EOF',
      ].join('\n');
      const r = await sprite.execFile('bash', ['-c', script]);
      eq(r.stdout, 'name=sprite\n', 'an unquoted heredoc expands');
      const quoted = await sprite.filesystem('/').readFile('home/sprite/heredoc/quoted.txt', 'utf8');
      eq(quoted, 'name=$NAME\n', 'a quoted heredoc is literal');
    }],
    ['fs write/read/readdir/stat/exists/mkdir/rm', async () => {
      const fs = sprite.filesystem('/home/sprite');
      await fs.writeFile('notes/a.txt', 'alpha\n');
      await fs.writeFile('notes/b.bin', Buffer.from([0, 1, 2]), { mode: 0o600 });
      eq(await fs.readFile('notes/a.txt', 'utf8'), 'alpha\n', 'read back');
      eq([...(await fs.readFile('notes/b.bin'))], [0, 1, 2], 'bytes read back');
      eq((await fs.readdir('notes')).sort(), ['a.txt', 'b.bin'], 'readdir');
      const typed = await fs.readdir('/home/sprite', { withFileTypes: true });
      expect(typed.some((d) => d.name === 'notes' && d.isDirectory()), 'readdir withFileTypes');
      const st = await fs.stat('notes/b.bin');
      eq([st.size, st.mode, st.isFile(), st.isDirectory()], [3, 0o600, true, false], 'stat of a file');
      // SDK behaviour: stat() takes entries[0] of /fs/list, and the API lists a directory's
      // children, so stat of a directory describes its first child (the Python SDK does the
      // same). Directories are checked through readdir and exec instead.
      eq((await fs.stat('notes')).size, 6, 'stat(dir) is its first child, a.txt');
      expect(await fs.exists('notes/a.txt'), 'exists');
      expect(!(await fs.exists('missing')), 'missing does not exist');
      const e = await rejection(fs.readFile('missing.txt'), 'read missing');
      expect(e instanceof FilesystemError, `FilesystemError, got ${e}`);
      eq(e.code, 'ENOENT', 'code');
      await fs.mkdir('dir2/deep', { recursive: true });
      await sprite.execFile('test', ['-d', '/home/sprite/dir2/deep']);
      eq(await fs.readdir('dir2/deep'), [], 'mkdir leaves an empty directory (.keep removed)');
      await fs.rm('notes/a.txt');
      expect(!(await fs.exists('notes/a.txt')), 'rm');
      const notEmpty = await rejection(fs.rm('notes'), 'rm of a non-empty directory');
      eq(notEmpty.code, 'ENOTEMPTY', 'rm without recursive');
      await fs.rm('notes', { recursive: true });
      expect(!(await fs.exists('notes')), 'rm recursive');
      await fs.rm('notes', { force: true });
      await fs.writeFile('dir2/shared.txt', 'from fs\n');
      const seen = await sprite.execFile('cat', ['/home/sprite/dir2/deep/../shared.txt']);
      eq(seen.stdout, 'from fs\n', 'exec and fs share one filesystem');
    }],
    ['services create/list/get/stop/start/restart/signal/logs/409/delete', async () => {
      // `sleep` runs for as long as the check needs whether or not the emulator runs a
      // service's command.
      const created = await drain(await sprite.createService('web', { cmd: 'sleep', args: ['3600'], httpPort: 8080 }));
      eq(created.map((e) => e.type), ['started', 'complete'], 'create stream');
      expect(typeof created[0].timestamp === 'number', 'timestamps in ms');
      const listed = await sprite.listServices();
      eq(listed.map((s) => s.name), ['web'], 'list');
      eq([listed[0].state.status, listed[0].httpPort], ['running', 8080], 'running with its port');
      const got = await sprite.getService('web');
      eq([got.cmd, got.args, got.needs], ['sleep', ['3600'], []], 'get');
      const stopped = await drain(await sprite.stopService('web'));
      expect(stopped.some((e) => e.type === 'stopped'), `stop stream ${JSON.stringify(stopped)}`);
      eq((await sprite.getService('web')).state.status, 'stopped', 'stopped');
      // SDK behaviour: a 409 (stop of a stopped service) is a plain Error, not an APIError.
      const again = await rejection(sprite.stopService('web'), 'stop of a stopped service');
      expect(again.message.startsWith('Service not running'), again.message);
      const started = await drain(await sprite.startService('web'));
      expect(started.some((e) => e.type === 'started'), `start stream ${JSON.stringify(started)}`);
      const restarted = await drain(await sprite.restartService('web'));
      eq(restarted.map((e) => e.type).filter((t) => t !== 'complete').slice(-1), ['started'], 'restart ends started');
      await sprite.signalService('web', 'HUP');
      await drain(await sprite.getServiceLogs('web'));
      const conflict = await rejection(
        sprite.createService('other', { cmd: 'sleep', args: ['60'], httpPort: 9000 }),
        'a second http_port',
      );
      expect(conflict.message.startsWith('Service conflict'), conflict.message);
      await sprite.deleteService('web');
      eq(await sprite.listServices(), [], 'deleted');
      const missing = await rejection(sprite.getService('web'), 'get a deleted service');
      expect(missing.message.startsWith('Service not found'), missing.message);
    }],
    ['checkpoints create/list/get/restore', async () => {
      const fs = sprite.filesystem('/');
      await fs.writeFile('home/sprite/state.txt', 'before');
      const made = await drain(await sprite.createCheckpoint('sdk golden'));
      const last = made[made.length - 1];
      eq(last.type, 'complete', 'last message');
      const m = /\b(v\d+)\b/.exec(last.data ?? '');
      expect(m, `checkpoint id in ${JSON.stringify(last.data)}`);
      const id = m[1];
      const listed = await sprite.listCheckpoints();
      eq(listed.map((c) => c.id), [id], 'list');
      eq(listed[0].comment, 'sdk golden', 'comment');
      expect(listed[0].createTime instanceof Date && !Number.isNaN(listed[0].createTime.getTime()), 'create_time parses');
      eq((await sprite.getCheckpoint(id)).id, id, 'get');
      await fs.writeFile('home/sprite/state.txt', 'after');
      await fs.writeFile('home/sprite/new.txt', 'new');
      const restored = await drain(await sprite.restoreCheckpoint(id));
      eq(restored[restored.length - 1].type, 'complete', 'restore stream ends complete');
      eq(await fs.readFile('home/sprite/state.txt', 'utf8'), 'before', 'files restored');
      expect(!(await fs.exists('home/sprite/new.txt')), 'later files gone');
      // SDK behaviour: a missing checkpoint is a plain Error with this text.
      const e = await rejection(sprite.getCheckpoint('v999'), 'get a missing checkpoint');
      eq(e.message, 'Checkpoint not found: v999', 'message');
    }],
    ['network policy get/update', async () => {
      eq(await sprite.getNetworkPolicy(), { rules: [] }, 'default policy');
      const policy = { rules: [{ domain: 'example.com', action: 'allow' }, { include: 'defaults' }] };
      await sprite.updateNetworkPolicy(policy);
      eq(await sprite.getNetworkPolicy(), policy, 'stored');
    }],
    ['exec sessions list + killSession', async () => {
      eq(await sprite.listSessions(), [], 'no sessions when idle');
      const cmd = sprite.spawn('sleep', ['30']);
      await once(cmd, 'spawn');
      let sessions = [];
      for (let i = 0; i < 100 && sessions.length === 0; i += 1) {
        sessions = await sprite.listSessions();
        if (sessions.length === 0) await new Promise((r) => setTimeout(r, 20));
      }
      eq(sessions.length, 1, 'one running session');
      const s = sessions[0];
      eq([s.command, s.workdir, s.tty, s.isActive], ['sleep 30', '/home/sprite', false, true], 'session fields');
      expect(s.created instanceof Date && s.created.getFullYear() > 2000, `created parses: ${s.created}`);
      const events = await drain(await sprite.killSession(s.id, 'SIGTERM'));
      eq(events.map((e) => e.type), ['signal', 'exited', 'complete'], 'kill stream');
      eq(await cmd.wait(), 143, 'the killed command exits 128 + TERM');
      eq(await sprite.listSessions(), [], 'gone after the kill');
    }],
    ['sprites.delete', async () => {
      await client.deleteSprite(name);
      for (const extra of extras) await sprite.client.deleteSprite(extra);
      const e = await rejection(client.getSprite(name), 'get after delete');
      eq(e.statusCode, 404, 'deleted sprite is gone');
      eq((await client.listSprites({ prefix: name })).sprites, [], 'nothing left listed');
    }],
  ];

  for (const [label, fn] of checks) {
    try {
      await fn();
      results.passed += 1;
      console.log(`ok   ${label}`);
    } catch (e) {
      results.failed += 1;
      console.log(`FAIL ${label}`);
      console.log(`     ${e?.stack ?? e}`);
      // An exec that failed says why on its stderr (e.g. the emulator's "unsupported shell syntax").
      if (e instanceof ExecError) console.log(`     exit ${e.exitCode}, stderr: ${JSON.stringify(e.stderr)}`);
    }
  }
}

async function main() {
  if (process.argv.length !== 3) {
    console.error('usage: node emulator/conformance/js/check.mjs PATH/TO/sprites-emulator');
    return 2;
  }
  let emulator;
  try {
    emulator = await startEmulator(process.argv[2]);
  } catch (e) {
    console.log(`FAIL start emulator: ${e.message}`);
    console.log('sdk-js-conformance: 0 passed, 1 failed');
    return 1;
  }
  const results = { passed: 0, failed: 0 };
  try {
    await runChecks(emulator.baseURL, results);
  } finally {
    emulator.proc.kill('SIGKILL');
  }
  console.log(`sdk-js-conformance: ${results.passed} passed, ${results.failed} failed`);
  return results.failed === 0 ? 0 : 1;
}

// Exit explicitly: the SDK's keep-alive sockets and timers must not hold the process open.
process.exit(await main());
