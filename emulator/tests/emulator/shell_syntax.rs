//! The emulator's shell language over the real exec WebSocket: each construct clients send,
//! checked against what bash prints for the same script.

use crate::common::{Env, Exec, start};

async fn sprite() -> Env {
    let env = start().await;
    env.create_sprite("sh").await;
    env
}

async fn sh(env: &Env, script: &str) -> Exec {
    env.exec("sh", &["bash", "-c", script]).await
}

/// stdout and the exit code of a script that must print nothing on stderr.
async fn run(env: &Env, script: &str) -> (String, u8) {
    let r = sh(env, script).await;
    assert_eq!(r.err(), "", "{script}");
    (r.out(), r.code())
}

#[tokio::test]
async fn lists_and_conditionals() {
    let env = sprite().await;
    assert_eq!(run(&env, "true && echo a || echo b; false && echo c || echo d").await, ("a\nd\n".into(), 0));
    assert_eq!(run(&env, "false; echo $?; true; echo $?").await, ("1\n0\n".into(), 0));
    assert_eq!(run(&env, "! false && echo negated").await, ("negated\n".into(), 0));
    let script = "for x in 1 2 3; do if [ $x = 1 ]; then echo one; elif test $x -eq 2; then echo two; else echo other; fi; done";
    assert_eq!(run(&env, script).await, ("one\ntwo\nother\n".into(), 0));
    assert_eq!(run(&env, "if false; then echo no; fi; echo $?").await, ("0\n".into(), 0));
    let script = "case foo.json in *.md) echo md;; *.json|*.yaml) echo data;; *) echo other;; esac";
    assert_eq!(run(&env, script).await, ("data\n".into(), 0));
    let script = "n=0; while [ $n != 3 ]; do n=$n+; if [ $n = 0++ ]; then continue; fi; echo $n; [ $n = 0+++ ] && break; done";
    assert_eq!(run(&env, script).await, ("0+\n0+++\n".into(), 0));
    assert_eq!(run(&env, "until true; do echo never; done; echo after").await, ("after\n".into(), 0));
    assert_eq!(
        run(&env, "[[ abc == a* && -d /tmp ]] && echo yes; [[ x =~ ^y ]] || echo no").await,
        ("yes\nno\n".into(), 0)
    );
}

#[tokio::test]
async fn pipes_run_stages_together_and_report_the_last_status() {
    let env = sprite().await;
    assert_eq!(run(&env, "printf 'b\\na\\nc\\n' | grep -v a | wc -l").await, ("2\n".into(), 0));
    assert_eq!(run(&env, "echo hi | tee /tmp/t | cat; cat /tmp/t").await, ("hi\nhi\n".into(), 0));
    assert_eq!(run(&env, "false | true; echo $?").await, ("0\n".into(), 0));
    assert_eq!(run(&env, "set -o pipefail; false | true; echo $?").await, ("1\n".into(), 0));
    // Each stage is a subshell: the loop's variable does not come back.
    assert_eq!(
        run(&env, "v=out; echo in | while read v; do echo got $v; done; echo $v").await,
        ("got in\nout\n".into(), 0)
    );
    // `|&` also sends stderr down the pipe.
    assert_eq!(run(&env, "cat /missing |& grep -c 'No such'").await, ("1\n".into(), 0));
}

#[tokio::test]
async fn command_substitution_and_expansions() {
    let env = sprite().await;
    assert_eq!(run(&env, "x=$(echo hi); echo \"[$x]\" `echo tick`").await, ("[hi] tick\n".into(), 0));
    assert_eq!(
        run(&env, "echo \"$(echo $(echo deep))\"; y=$(false); echo $?").await,
        ("deep\n1\n".into(), 0)
    );
    let script = "unset U; E=; echo ${U:-d1} ${E:-d2} ${E-d3}. ${U:=set} $U ${U:+alt} ${#U}";
    assert_eq!(run(&env, script).await, ("d1 d2 . set set alt 3\n".into(), 0));
    let script = "p=/a/b/c.tar.gz; echo ${p##*/} ${p#*/} ${p%.*} ${p%%.*}";
    assert_eq!(run(&env, script).await, ("c.tar.gz a/b/c.tar.gz /a/b/c.tar /a/b/c\n".into(), 0));
    assert_eq!(
        run(&env, "echo ~ ~/x \"~\" '$HOME' \"$HOME\"").await,
        ("/home/sprite /home/sprite/x ~ $HOME /home/sprite\n".into(), 0)
    );
    // Unquoted expansions split into fields; quoted ones stay whole; "$@" keeps arguments.
    let script = "v='a  b'; for w in $v; do echo \"<$w>\"; done; for w in \"$v\"; do echo \"<$w>\"; done";
    assert_eq!(run(&env, script).await, ("<a>\n<b>\n<a  b>\n".into(), 0));
    let r = env
        .exec("sh", &["bash", "-c", "echo $0 $#; for a in \"$@\"; do echo \"[$a]\"; done", "name", "x y", ""])
        .await;
    assert_eq!(r.out(), "name 2\n[x y]\n[]\n");
    let r = sh(&env, "echo ${1:?usage: setup MARKER}; echo unreachable").await;
    assert_eq!((r.code(), r.out(), r.err()), (127, String::new(), "bash: 1: usage: setup MARKER\n".into()));
    assert_eq!(
        run(&env, "mkdir -p g && touch g/b.md g/a.md g/c.txt && echo g/*.md; echo none/*.x").await,
        ("g/a.md g/b.md\nnone/*.x\n".into(), 0)
    );
}

#[tokio::test]
async fn heredocs_quoted_and_unquoted() {
    let env = sprite().await;
    // The Node pool's env write, verbatim in shape.
    let r = sh(&env, "cat > /tmp/app.env << 'ENVEOF'\nPOOL_MODE=true\nKEY=$NOT_EXPANDED `nor this`\nENVEOF")
        .await;
    assert_eq!(r.code(), 0, "{}", r.err());
    assert_eq!(
        env.read_file("sh", "/tmp/app.env").await.unwrap(),
        b"POOL_MODE=true\nKEY=$NOT_EXPANDED `nor this`\n"
    );
    let r = sh(&env, "name=world; cat <<EOF\nhello $name $(echo sub) \\$literal 'q'\nEOF").await;
    assert_eq!(r.out(), "hello world sub $literal 'q'\n");
    let r = sh(&env, "if true; then\n\tcat <<-EOF\n\tindented\n\tEOF\nfi").await;
    assert_eq!(r.out(), "indented\n");
    assert_eq!(run(&env, "grep -c x <<< 'x'").await, ("1\n".into(), 0));
}

#[tokio::test]
async fn redirections() {
    let env = sprite().await;
    let script =
        "echo one > f; echo two >> f; cat f; ls /nope 2>/dev/null; echo $?; ls /nope > out 2>&1; cat out";
    let r = sh(&env, script).await;
    assert_eq!(r.out(), "one\ntwo\n2\nls: cannot access '/nope': No such file or directory\n");
    assert_eq!(r.err(), "");
    // Order matters: 2>&1 before > sends stderr to the old stdout.
    let r = sh(&env, "ls /nope 2>&1 > f2; echo done >&2").await;
    assert_eq!(
        (r.out(), r.err()),
        ("ls: cannot access '/nope': No such file or directory\n".into(), "done\n".into())
    );
    assert_eq!(
        run(&env, "printf 'l1\\nl2\\n' > in; wc -l < in; cat /nope &> both; wc -l < both").await,
        ("2\n1\n".into(), 0)
    );
    let r = sh(&env, "echo x > /missing/dir/f; echo $?").await;
    assert_eq!(
        (r.out(), r.err()),
        ("1\n".into(), "bash: /missing/dir/f: No such file or directory\n".into())
    );
    assert_eq!(run(&env, "{ echo a; echo b; } > grouped; cat grouped").await, ("a\nb\n".into(), 0));
    let r = sh(&env, "echo before; exec > log 2>&1; echo after; ls /nope").await;
    assert_eq!((r.out(), r.err(), r.code()), ("before\n".into(), String::new(), 2));
    let log = env.exec("sh", &["cat", "log"]).await.out();
    assert_eq!(log, "after\nls: cannot access '/nope': No such file or directory\n");
}

#[tokio::test]
async fn variables_export_source_and_functions() {
    let env = sprite().await;
    let script = "X=1; printenv X; echo $?; export X; printenv X; Y=2 printenv Y; echo ${Y:-gone}";
    assert_eq!(run(&env, script).await, ("1\n1\n2\ngone\n".into(), 0));
    env.write_file("sh", "/home/sprite/lib.sh", "V=sourced\ngreet() { echo \"hi $1\"; }\n").await;
    assert_eq!(
        run(&env, ". ./lib.sh; echo $V; source lib.sh; greet you").await,
        ("sourced\nhi you\n".into(), 0)
    );
    let script = "f() { local x=$1; echo \"f:$x\"; return 3; }; x=outer; f inner; echo $? $x";
    assert_eq!(run(&env, script).await, ("f:inner\n3 outer\n".into(), 0));
    assert_eq!(
        run(&env, "(cd /tmp; Z=1); pwd; echo ${Z:-unset}; cd /tmp && pwd").await,
        ("/home/sprite\nunset\n/tmp\n".into(), 0)
    );
    // `set -a` exports what a sourced .env assigns, as the gateway launcher relies on.
    env.write_file("sh", "/home/sprite/.env", "TOKEN=abc\n").await;
    assert_eq!(run(&env, "set -a; . ./.env; set +a; printenv TOKEN").await, ("abc\n".into(), 0));
    assert_eq!(run(&env, "eval 'A=1; echo $A'").await, ("1\n".into(), 0));
    assert_eq!(run(&env, "set -- p q; echo $1 $#; shift; echo $1").await, ("p 2\nq\n".into(), 0));
    assert_eq!(
        run(&env, "IFS= read -r line <<< '  spaced  '; echo \"[$line]\"; read a b <<< 'x y z'; echo $b")
            .await,
        ("[  spaced  ]\ny z\n".into(), 0)
    );
}

#[tokio::test]
async fn set_e_u_and_exit() {
    let env = sprite().await;
    let r = sh(&env, "set -e; echo start; false; echo never").await;
    assert_eq!((r.out(), r.code()), ("start\n".into(), 1));
    let script = "set -euo pipefail; if false; then :; fi; false || true; ! true; f() { false; echo in-f; }; f && echo ok; echo end";
    assert_eq!(run(&env, script).await, ("in-f\nok\nend\n".into(), 0));
    let r = sh(&env, "set -u; echo ${OK:-fine}; echo $NOPE; echo never").await;
    assert_eq!((r.out(), r.code(), r.err()), ("fine\n".into(), 127, "bash: NOPE: unbound variable\n".into()));
    let r = sh(&env, "exit 7; echo never").await;
    assert_eq!((r.out(), r.code()), (String::new(), 7));
    let r = sh(&env, "(exit 4); echo $?; bash -c 'exit 5'; echo $?").await;
    assert_eq!(r.out(), "4\n5\n");
    let r = env.exec("sh", &["bash", "-e", "-c", "false; echo never"]).await;
    assert_eq!(r.code(), 1);
}

#[tokio::test]
async fn scripts_on_the_sprite_run_as_programs() {
    let env = sprite().await;
    // The seed's wrapper pattern: a heredoc, chmod +x, then run by name from PATH.
    let script = "mkdir -p /usr/local/bin\ncat > /usr/local/bin/hello << 'WRAPPER'\n#!/usr/bin/env bash\necho \"hello $1 from $0\"\nexit 3\nWRAPPER\nchmod +x /usr/local/bin/hello\nhello you; echo $?; command -v hello";
    let r = sh(&env, script).await;
    assert_eq!(r.out(), "hello you from /usr/local/bin/hello\n3\n/usr/local/bin/hello\n", "{}", r.err());
    env.write_file("sh", "/home/sprite/plain.sh", "echo plain\n").await;
    let r = sh(&env, "./plain.sh; echo $?; bash plain.sh; command -v cat; command -v nope; echo $?").await;
    assert_eq!(r.out(), "126\nplain\n/usr/bin/cat\n1\n");
    assert_eq!(r.err(), "bash: ./plain.sh: Permission denied\n");
    // A script piped into bash, as `curl … | bash` does.
    let r = sh(&env, "echo 'echo from-stdin; exit 4' | bash; echo $?").await;
    assert_eq!(r.out(), "from-stdin\n4\n");
    let r =
        sh(&env, "sudo -E bash -c 'echo $HOME'; sudo bash -c 'echo $HOME'; sudo FOO=1 printenv FOO").await;
    assert_eq!(r.out(), "/home/sprite\n/root\n1\n");
    assert_eq!(
        run(&env, "env A=1 B=2 printenv A B; env -i printenv HOME; echo $?").await,
        ("1\n2\n1\n".into(), 0)
    );
}

#[tokio::test]
async fn the_seed_extension_patch_loop_runs() {
    let env = sprite().await;
    let pkg = r#"{"peerDependencies": {"openclaw": ">=2026.1.0"}, "devDependencies": {"openclaw" : "workspace:*"}}"#;
    env.write_file("sh", "/opt/src/extensions/convos/package.json", pkg).await;
    env.write_file("sh", "/opt/src/extensions/other/README.md", "# x").await;
    let script = r#"cd /opt/src
find ./extensions -name 'package.json' -type f | while read f; do
  sed -i -E 's/"openclaw"[[:space:]]*:[[:space:]]*">=[^"]+"/"openclaw": "*"/g' "$f"
  sed -i -E 's/"openclaw"[[:space:]]*:[[:space:]]*"workspace:[^"]+"/"openclaw": "*"/g' "$f"
done"#;
    let r = sh(&env, script).await;
    assert_eq!(r.code(), 0, "{}", r.err());
    let patched = env.read_file("sh", "/opt/src/extensions/convos/package.json").await.unwrap();
    assert_eq!(
        String::from_utf8(patched).unwrap(),
        r#"{"peerDependencies": {"openclaw": "*"}, "devDependencies": {"openclaw": "*"}}"#
    );
}

#[tokio::test]
async fn what_cannot_run_fails_loudly() {
    let env = sprite().await;
    let cases: &[(&str, u8, &str)] = &[
        ("frobnicate --x", 127, "bash: frobnicate: command not found\n"),
        ("/opt/nothing/here", 127, "bash: /opt/nothing/here: No such file or directory\n"),
        ("echo $((1 + 2))", 2, "unsupported shell syntax: arithmetic expansion"),
        ("cat <(echo x)", 2, "unsupported shell syntax: process substitution"),
        ("sleep 1 &", 2, "unsupported shell syntax: background jobs (&)"),
        ("echo x 3> f", 2, "unsupported shell syntax: redirecting fd 3"),
        ("set -x", 2, "unsupported shell syntax: set -x"),
        ("trap 'echo bye' EXIT", 2, "bash: trap: emulator: this builtin is not implemented\n"),
        ("if true; then echo", 2, "bash: syntax error"),
        ("ls -l", 2, "ls: emulator: unsupported option '-l'\n"),
        ("grep -P x /dev/null", 2, "grep: emulator: unsupported option '-P'\n"),
        ("sed -n 1p /dev/null", 2, "sed: emulator: unsupported option '-n'\n"),
        ("echo x | sed 's/x/y/w out'", 2, "sed: emulator: only s/…/…/ substitutions are implemented"),
        ("cp -L a b", 2, "cp: emulator: unsupported option '-L'\n"),
        ("echo ${x/a/b}", 2, "unsupported shell syntax: parameter expansion"),
        ("wc /dev/null", 2, "wc: emulator: unsupported option"),
        ("bash -x -c true", 2, "bash: emulator: unsupported option '-x'\n"),
    ];
    for (script, code, err) in cases {
        let r = sh(&env, script).await;
        assert_eq!(r.code(), *code, "{script}: {}", r.err());
        assert!(r.err().contains(err), "{script}: stderr {:?} lacks {err:?}", r.err());
        assert_eq!(r.out(), "", "{script}");
    }
    // Direct exec (no shell) of an unknown program is refused the same way.
    let r = env.exec("sh", &["rustc", "--version"]).await;
    assert_eq!((r.code(), r.err()), (127, "bash: rustc: command not found\n".into()));
}

#[tokio::test]
async fn a_busy_loop_can_be_killed_and_runaway_recursion_stops() {
    let env = sprite().await;
    let mut ws =
        env.ws("sh", &[("cmd", "bash"), ("cmd", "-c"), ("cmd", "while :; do :; done")]).await.unwrap();
    let info = match futures_util::StreamExt::next(&mut ws).await.unwrap().unwrap() {
        tokio_tungstenite::tungstenite::Message::Text(t) => {
            serde_json::from_str::<serde_json::Value>(t.as_str()).unwrap()
        }
        other => panic!("{other:?}"),
    };
    let id = info["session_id"].as_str().unwrap().to_string();
    let kill = env.post(&format!("/v1/sprites/sh/exec/{id}/kill"), serde_json::Value::Null).await;
    assert_eq!(kill.status(), 200);
    let r = crate::common::collect(&mut ws, true).await;
    assert_eq!(r.exit_payload, Some(vec![143]), "the spinning loop was killed");
    let r = sh(&env, "f() { f; }; f; echo never").await;
    assert_eq!(r.code(), 1);
    assert_eq!(r.err(), "bash: f: maximum function nesting level exceeded (50)\n");
}

#[tokio::test]
async fn runaway_script_nesting_stops() {
    let env = sprite().await;
    env.write_file("sh", "/home/sprite/self.sh", ". ./self.sh\n").await;
    let r = sh(&env, ". ./self.sh; echo never").await;
    assert_eq!((r.code(), r.out()), (2, String::new()));
    assert_eq!(r.err(), "bash: emulator: scripts nested more than 50 deep\n");
    env.write_file("sh", "/home/sprite/again.sh", "bash ./again.sh\n").await;
    let r = sh(&env, "bash ./again.sh; echo $?").await;
    assert_eq!(r.out(), "2\n");
    assert!(r.err().ends_with("bash: emulator: scripts nested more than 50 deep\n"), "{}", r.err());
}
