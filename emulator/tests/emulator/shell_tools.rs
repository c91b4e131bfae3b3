//! The simulated commands on a Sprite's PATH, over the real exec WebSocket, with the output
//! and exit codes coreutils/grep/sed/findutils give.

use serde_json::Value;

use crate::common::{Env, json, start};

async fn sprite() -> Env {
    let env = start().await;
    env.create_sprite("t").await;
    env
}

/// stdout and exit code of `bash -c script`; stderr must be empty.
async fn run(env: &Env, script: &str) -> (String, u8) {
    let r = env.exec("t", &["bash", "-c", script]).await;
    assert_eq!(r.err(), "", "{script}");
    (r.out(), r.code())
}

async fn out(env: &Env, script: &str) -> String {
    let (out, code) = run(env, script).await;
    assert_eq!(code, 0, "{script}");
    out
}

/// The mode of `path` as the fs API lists it in its parent directory.
async fn mode(env: &Env, path: &str) -> String {
    let parent = path.rsplit_once('/').map(|(p, _)| p).unwrap_or("/");
    let resp = env.get(&format!("/v1/sprites/t/fs/list?path={parent}&workingDir=/")).await;
    let body: Value = json(resp).await;
    let entry = body["entries"].as_array().unwrap().iter().find(|e| e["path"] == path).cloned();
    entry.unwrap_or_else(|| panic!("{path} not listed"))["mode"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn echo_printf_cat() {
    let env = sprite().await;
    assert_eq!(out(&env, "echo -n a; echo -e 'b\\tc'; echo -x; echo 'd\\n'").await, "ab\tc\n-x\nd\\n\n");
    assert_eq!(
        out(&env, "printf '%s=%d|%5s|%-3s|%03d|%x|%%\\n' k 42 r l 7 255").await,
        "k=42|    r|l  |007|ff|%\n"
    );
    assert_eq!(out(&env, "printf '%s\\n' a b c").await, "a\nb\nc\n");
    assert_eq!(out(&env, "printf 'x'; printf '%b' 'y\\n'").await, "xy\n");
    assert_eq!(out(&env, "echo hi > a; cat a - a <<< mid").await, "hi\nmid\nhi\n");
    let r = env.exec("t", &["bash", "-c", "cat nope; echo $?"]).await;
    assert_eq!((r.out(), r.err()), ("1\n".into(), "cat: nope: No such file or directory\n".into()));
}

#[tokio::test]
async fn mkdir_chmod_touch_ls() {
    let env = sprite().await;
    assert_eq!(
        run(&env, "mkdir -p a/b/c && mkdir -m 700 d && touch a/f a/.h && ls a; ls -a a; ls -A a").await,
        ("b\nf\n.\n..\n.h\nb\nf\n.h\nb\nf\n".into(), 0)
    );
    assert_eq!(mode(&env, "/home/sprite/d").await, "0700");
    let r = env.exec("t", &["bash", "-c", "mkdir a"]).await;
    assert_eq!((r.code(), r.err()), (1, "mkdir: cannot create directory 'a': File exists\n".into()));
    for (from, m, want) in [
        ("644", "755", "0755"),
        ("644", "+x", "0755"),
        ("755", "-x", "0644"),
        ("644", "u+rwx,go-w", "0744"),
        ("644", "a=r", "0444"),
        ("444", "g+w", "0464"),
        // Without u/g/o/a the umask (022) keeps group and others from getting w.
        ("444", "+w", "0644"),
        ("755", "0600", "0600"),
    ] {
        let (_, code) = run(&env, &format!("touch s.sh && chmod {from} s.sh && chmod {m} s.sh")).await;
        assert_eq!(code, 0, "{m}");
        assert_eq!(mode(&env, "/home/sprite/s.sh").await, want, "chmod {m} on {from}");
    }
    let r = env.exec("t", &["bash", "-c", "chmod bogus s.sh"]).await;
    assert_eq!((r.code(), r.err()), (1, "chmod: invalid mode: 'bogus'\n".into()));
    assert_eq!(run(&env, "chmod -R 700 a && test -x a/f && echo x").await, ("x\n".into(), 0));
    assert_eq!(mode(&env, "/home/sprite/a/b/c").await, "0700");
}

#[tokio::test]
async fn rm_cp_mv_tee() {
    let env = sprite().await;
    out(&env, "mkdir -p src/sub && echo 1 > src/one && echo 2 > src/sub/two && chmod 755 src/one").await;
    let r = env.exec("t", &["bash", "-c", "cp src dst"]).await;
    assert_eq!((r.code(), r.err()), (1, "cp: -r not specified; omitting directory 'src'\n".into()));
    assert_eq!(
        out(&env, "cp -r src dst && cat dst/sub/two && cp src/one copied && cat copied").await,
        "2\n1\n"
    );
    assert_eq!(mode(&env, "/home/sprite/copied").await, "0755");
    assert_eq!(out(&env, "mkdir into && cp src/one src/sub/two into && ls into").await, "one\ntwo\n");
    assert_eq!(
        out(&env, "mv dst moved && test ! -e dst && cat moved/one && mv copied moved/ && ls moved").await,
        "1\ncopied\none\nsub\n"
    );
    let r = env.exec("t", &["bash", "-c", "rm moved; echo $?; rm -r moved; rm -f nothing; rm nothing"]).await;
    assert_eq!(r.out(), "1\n");
    assert_eq!(
        r.err(),
        "rm: cannot remove 'moved': Is a directory\nrm: cannot remove 'nothing': No such file or directory\n"
    );
    assert_eq!(r.code(), 1);
    assert_eq!(
        out(&env, "echo a | tee t1 t2 >/dev/null; echo b | tee -a t1; cat t1 t2").await,
        "b\na\nb\na\n"
    );
}

#[tokio::test]
async fn test_and_bracket() {
    let env = sprite().await;
    env.write_file("t", "/home/sprite/file", "x").await;
    env.write_file("t", "/home/sprite/empty", "").await;
    let checks = [
        ("test -f file", 0),
        ("test -d file", 1),
        ("test -s file", 0),
        ("test -s empty", 1),
        ("test -e nope", 1),
        ("[ -d /tmp ]", 0),
        ("[ -n \"\" ]", 1),
        ("[ -z \"\" ]", 0),
        ("[ abc = abc ]", 0),
        ("[ abc != abc ]", 1),
        ("[ 3 -lt 22 ]", 0),
        ("[ 3 -gt 22 ]", 1),
        ("[ ! -e nope ]", 0),
        ("[ -f file -a -d /tmp ]", 0),
        ("[ -f nope -o -d /tmp ]", 0),
        ("test -x file", 1),
        ("test", 1),
        ("[ x ]", 0),
    ];
    for (script, want) in checks {
        assert_eq!(run(&env, script).await.1, want, "{script}");
    }
    let r = env.exec("t", &["bash", "-c", "[ -f file"]).await;
    assert_eq!((r.code(), r.err()), (2, "bash: [: missing `]'\n".into()));
    let r = env.exec("t", &["bash", "-c", "[ a -lt 2 ]"]).await;
    assert_eq!((r.code(), r.err()), (2, "bash: [: a: integer expression expected\n".into()));
}

#[tokio::test]
async fn grep_on_files_and_stdin() {
    let env = sprite().await;
    env.write_file("t", "/home/sprite/g.txt", "Alpha\nbeta\ngamma 42\nBETA\n").await;
    assert_eq!(out(&env, "grep beta g.txt").await, "beta\n");
    assert_eq!(out(&env, "grep -i beta g.txt").await, "beta\nBETA\n");
    assert_eq!(out(&env, "grep -n -v -i beta g.txt").await, "1:Alpha\n3:gamma 42\n");
    assert_eq!(out(&env, "grep -c a g.txt").await, "3\n");
    assert_eq!(out(&env, "grep -E '[0-9]+$|^A' g.txt").await, "Alpha\ngamma 42\n");
    assert_eq!(out(&env, "grep 'a \\([0-9]\\)\\{2\\}' g.txt").await, "gamma 42\n");
    assert_eq!(out(&env, "grep -F 'a.' g.txt; echo $?").await, "1\n");
    assert_eq!(out(&env, "grep -q gamma g.txt && echo found").await, "found\n");
    assert_eq!(out(&env, "printf 'x\\ny\\n' | grep -c y").await, "1\n");
    assert_eq!(
        out(&env, "cp g.txt h.txt; grep -n gamma g.txt h.txt").await,
        "g.txt:3:gamma 42\nh.txt:3:gamma 42\n"
    );
    let r = env.exec("t", &["bash", "-c", "grep x missing; echo $?"]).await;
    assert_eq!((r.out(), r.err()), ("2\n".into(), "grep: missing: No such file or directory\n".into()));
}

#[tokio::test]
async fn sed_substitutions() {
    let env = sprite().await;
    env.write_file("t", "/home/sprite/s.txt", "a-a-a\nkey: old\n").await;
    assert_eq!(out(&env, "sed 's/a/b/' s.txt").await, "b-a-a\nkey: old\n");
    assert_eq!(out(&env, "sed 's/a/b/g; s|key: \\(.*\\)|[\\1] &|' s.txt").await, "b-b-b\n[old] key: old\n");
    assert_eq!(out(&env, "echo 'x1y22' | sed -E 's/[0-9]+/<&>/g'").await, "x<1>y<22>\n");
    assert_eq!(out(&env, "echo aaa | sed 's/a/b/2'; echo A | sed 's/a/c/I'").await, "aba\nc\n");
    assert_eq!(out(&env, "echo cost | sed -e 's/cost/$5/'").await, "$5\n");
    assert_eq!(out(&env, "sed -i 's/old/new/' s.txt && cat s.txt").await, "a-a-a\nkey: new\n");
}

#[tokio::test]
async fn find_head_tail_wc() {
    let env = sprite().await;
    out(&env, "mkdir -p w/a/b w/c && touch w/a/package.json w/a/b/package.json w/c/x.md w/top.json").await;
    assert_eq!(
        out(&env, "find w -name '*.json'").await,
        "w/a/b/package.json\nw/a/package.json\nw/top.json\n"
    );
    assert_eq!(out(&env, "find ./w -type d").await, "./w\n./w/a\n./w/a/b\n./w/c\n");
    assert_eq!(out(&env, "find w -maxdepth 1 -type f").await, "w/top.json\n");
    let r = env.exec("t", &["bash", "-c", "find w -exec rm {} \\;"]).await;
    assert_eq!((r.code(), r.err()), (2, "find: emulator: unsupported option '-exec'\n".into()));
    out(&env, "printf '1\\n2\\n3\\n4\\n5\\n' > n").await;
    assert_eq!(
        out(&env, "head -n 2 n; tail -n 2 n; tail -n +4 n; head -1 n; tail -3 n | head -c 2").await,
        "1\n2\n4\n5\n4\n5\n1\n3\n"
    );
    assert_eq!(
        out(&env, "wc -l n; wc -l < n; cat n | wc -c; wc -w n n").await,
        "5 n\n5\n10\n 5 n\n 5 n\n10 total\n"
    );
}

#[tokio::test]
async fn small_tools_and_builtins() {
    let env = sprite().await;
    assert_eq!(
        out(
            &env,
            "basename /a/b/c.txt; basename /a/b/c.txt .txt; basename /; dirname /a/b/c; dirname c; dirname /c"
        )
        .await,
        "c.txt\nc\n/\n/a/b\n.\n/\n"
    );
    assert_eq!(
        out(&env, "true; sleep 0; cd /tmp; pwd; cd; pwd; cd - >/dev/null; pwd").await,
        "/tmp\n/home/sprite\n/tmp\n"
    );
    assert_eq!(
        out(&env, "export A=1; printenv A; env | grep -c '^A=1$'; command -v ls cd").await,
        "1\n1\n/usr/bin/ls\ncd\n"
    );
    assert_eq!(run(&env, "false").await.1, 1);
    assert_eq!(run(&env, "/bin/echo direct; /usr/bin/true").await, ("direct\n".into(), 0));
}
