//! The bad-config table: every way a config can be wrong names its file,
//! line (and column where TOML knows it) and key. The end-to-end test in
//! tests/tests/daemon.rs runs a few of these through the binary.
use std::path::Path;

#[test]
fn bad_configs_are_errors_with_file_line_and_key() {
    let cases: &[(&str, &str)] = &[
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\nbogus = 1\n",
            ":4:1: watch[0].bogus: unknown field `bogus`",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\nautostart = \"yes\"\n",
            ":4:13: watch[0].autostart: invalid type: string \"yes\", expected a boolean",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\nstop_timeout = \"10x\"\n",
            ":4:16: watch[0].stop_timeout: 'x' in '10x' is not a time unit (use ms, s, m or h)",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\nstop_signal = \"TERMINATE\"\n",
            ":4:15: watch[0].stop_signal: unknown signal 'TERMINATE'",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\nuid = \"no-such-user\"\n",
            ":4:7: watch[0].uid: no such user: 'no-such-user'",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\n[[watch]]\nname = \"a\"\nstart = \"y\"\n",
            ":5: watch[1].name: duplicate watch name 'a'",
        ),
        (
            "[[watch]]\nname = \"a\"\n",
            ":1:1: watch[0]: missing field `start`",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\nmemory_max = \"1KB\"\n",
            ":4:14: watch[0].memory_max: 1024 bytes: a memory limit below 4KB leaves no room to start",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\nmemory_high = \"10\"\n",
            ":4:15: watch[0].memory_high: 10 bytes: a memory limit below 4KB leaves no room to start",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\ncpu_max = \"half\"\n",
            ":4:11: watch[0].cpu_max: 'half' is not a percentage (e.g. \"90%\")",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\ncpu_max = \"0.5%\"\n",
            ":4:11: watch[0].cpu_max: 0.5%: a CPU quota is at least 1% (the kernel's 1 ms a period)",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\npids_max = 0\n",
            ":4:12: watch[0].pids_max: 0: no process could ever start (at least 1, the program itself)",
        ),
        (
            "[[watch]\nname = \"a\"\n",
            ":1:9: unclosed array table, expected `]`",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\nlimits = { nofiles = 10 }\n",
            ":4: watch[0].limits: unknown limit 'nofiles' (known: cpu, fsize, data, stack, core, rss, nofile, as, nproc, memlock, locks, sigpending, msgqueue, nice, rtprio, rttime)",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\nlimits = { nofile = -1 }\n",
            ":4: watch[0].limits: nofile: -1 is not a limit: a count, \"unlimited\", or [soft, hard]",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\nlimits = { stack = [\"8MB\", \"4MB\"] }\n",
            ":4: watch[0].limits: stack: soft 8388608 is above hard 4194304: the soft limit must be at most the hard one",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\nenv_file = \"/tmp\"\n",
            ":4: watch[0].env_file: /tmp is a directory, not an env file",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\nenv_file = [\"-/etc/x\", \"relative/env\"]\n",
            ":4: watch[0].env_file: 'relative/env' is not an absolute path (an env file is named in full, '-' first if it may be absent)",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\nruntime_dir = [\"app\", \"/run/app\"]\n",
            ":4: watch[0].runtime_dir: '/run/app' is not a name under /run (as in systemd's RuntimeDirectory=: \"redis\", \"app/sockets\"; no '/' first, no '..')",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\nruntime_dir = \"../etc\"\n",
            ":4: watch[0].runtime_dir: '../etc' is not a name under /run (as in systemd's RuntimeDirectory=: \"redis\", \"app/sockets\"; no '/' first, no '..')",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\nruntime_dir_mode = \"0750\"\n",
            ":4: watch[0].runtime_dir_mode: set without runtime_dir (e.g. runtime_dir = \"app\")",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\nruntime_dir = \"app\"\nruntime_dir_mode = \"u+rwx\"\n",
            ":5:20: watch[0].runtime_dir_mode: 'u+rwx' is not an octal mode like \"0755\"",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\nwatchdog = \"10ms\"\n",
            ":4: watch[0].watchdog: at least 100ms: a process cannot be asked to say it lives more often",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\nwatchdog_signal = \"USR1\"\n",
            ":4: watch[0].watchdog_signal: set without watchdog (e.g. watchdog = \"30s\")",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\ninstances = 0\n",
            ":4: watch[0].instances: instances = 0: from 1 to 10000",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x --id {instance}\"\n",
            ":3: watch[0].start: uses {instance} or {name}, which only a watch with instances (instances = N) has",
        ),
        (
            "[[watch]]\nname = \"a\"\ninstances = 2\nstart = \"awk '{print $1}'\"\n",
            ":4: watch[0].start: unknown placeholder {print $1} in '{print $1}' (known: {instance}, {name}, {8000 + instance}; write {{ for a brace)",
        ),
        (
            "[[watch]]\nname = \"a\"\ninstances = 2\nstart = \"x\"\nstdout = \"/var/log/{name\"\n",
            ":5: watch[0].stdout: '/var/log/{name' opens a brace it does not close (write {{ for a brace)",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\ninstances = 10000\n[[watch]]\nname = \"b\"\nstart = \"x\"\ninstances = 10000\n[[watch]]\nname = \"c\"\nstart = \"x\"\ninstances = 10000\n[[watch]]\nname = \"d\"\nstart = \"x\"\ninstances = 2\n",
            ":16: watch[3].instances: 2 more watches would make more than 30000 in all",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\nkeepalive = \"sometimes\"\n",
            ":4: watch[0].keepalive: 'sometimes': true, false, \"always\", \"on-failure\" or \"never\"",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\nkeepalive = \"on-failure\"\nsuccess_codes = [0, 256]\n",
            ":5: watch[0].success_codes: 256 is not an exit code (0 to 255)",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\nsuccess_codes = [0, 2]\n",
            ":4: watch[0].success_codes: only keepalive = \"on-failure\" tells success from failure",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\nstderr = \"&stdout\"\n",
            ":4: watch[0].stderr: \"&stdout\" goes where stdout goes, and stdout is not set",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\ntimestamps = true\n",
            ":4: watch[0].timestamps: stamps lines in the log files, and neither stdout nor stderr is set",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\nstdout = { path = \"/tmp/a.log\", backups = 3 }\n",
            ":4: watch[0].stdout: backups without max_size: a file is rotated at a size",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\nstdout = { path = \"/tmp/a.log\", max_size = \"1MB\", backups = 0 }\n",
            ":4: watch[0].stdout: backups = 0 would delete each file as it is rotated: at least 1",
        ),
        (
            "[daemon]\nweb_token = \"0123456789abcdef\"\n",
            ":2: daemon.web_token: a token for a web page that is off (set web = true or an address)",
        ),
        (
            "[daemon]\nweb = true\nweb_token = \"short\"\n",
            ":3:13: daemon.web_token: a token of 5 characters is too short to keep a network out (at least 16)",
        ),
        (
            "[daemon]\nweb = true\nweb_token = \"0123456789 abcdef\"\n",
            ":3:13: daemon.web_token: the token may hold only printable ASCII without spaces (what an Authorization header carries)",
        ),
        (
            "[daemon]\nweb = \"everywhere\"\n",
            ":2:7: daemon.web: 'everywhere' is not an address to listen on (e.g. \"127.0.0.1:8796\", or true for the metrics listener)",
        ),
        (
            "[daemon]\nmetrics = \"127.0.0.1:9999\"\nweb = \"127.0.0.1:9999\"\n",
            ":3: daemon.web: 127.0.0.1:9999 is the metrics address: say web = true to serve the page there",
        ),
        (
            "[daemon]\nmetrics = \"localhost\"\n",
            ":2:11: daemon.metrics: 'localhost' is not an address to listen on (e.g. \"127.0.0.1:8795\", or true for that)",
        ),
        (
            "[daemon]\nbackend = \"magic\"\n",
            ":2:11: daemon.backend: unknown backend 'magic'",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\nmemory = { above = \"150MB\", times = [5, 3] }\n",
            ":4: watch[0].memory: times = [5, 3]: fire after N of the last M checks needs 1 <= N <= M",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\ncpu = { above = \"lots\" }\n",
            ":4:17: watch[0].cpu.above: 'lots' is not a percentage (e.g. \"90%\")",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\nafter = [\"b\"]\n[[watch]]\nname = \"b\"\nstart = \"y\"\nafter = [\"a\"]\n",
            ":4: watch[0].after: start order has a cycle: a after b after a",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\nafter = [\"nope\"]\n",
            ":4: watch[0].after: no watch named 'nope'",
        ),
        (
            "[daemon]\ntracking = \"magic\"\n",
            ":2:12: daemon.tracking: unknown variant `magic`, expected one of `auto`, `cgroup`, `fork`",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\nrestart_grace = \"soon\"\n",
            ":4:17: watch[0].restart_grace: ",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = []\n",
            ":3: watch[0].start: is empty: name the program to run",
        ),
        (
            "[[watch]]\nname = \"a b\"\nstart = \"x\"\n",
            ":2: watch[0].name: 'a b' is not a usable name",
        ),
        (
            "[[watch]]\nname = \".\"\nstart = \"x\"\n",
            ":2: watch[0].name: '.' is not a usable name",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\nstop_timeout = \"99999999999999999999s\"\n",
            ":4:16: watch[0].stop_timeout: '99999999999999999999s' is too long",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x 'y\"\n",
            ":3: watch[0].start: cannot split 'x 'y' into words",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\numask = \"999\"\n",
            ":4:9: watch[0].umask: '999' is not an octal umask",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\noom_score_adj = -1001\n",
            ":4:17: watch[0].oom_score_adj: -1001 is not an oom_score_adj: it is from -1000",
        ),
        (
            "[daemon]\noom_score_adj = \"low\"\n",
            ":2:17: daemon.oom_score_adj: invalid type: string \"low\", expected i64",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\nflapping = { starts = 0 }\n",
            ":4: watch[0].flapping.starts: must be at least 1",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\n[watch.health]\nhttp = \"http://127.0.0.1/\"\ntcp = \"127.0.0.1:80\"\n",
            ":4: watch[0].health: needs exactly one of http, tcp, unix or exec",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\n[watch.health]\nhttp = \"localhost:8080/health\"\n",
            ":4: watch[0].health: http = 'localhost:8080/health': an http:// or https:// URL with a host",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\n[watch.health]\nhttp = \"http://127.0.0.1/\"\nstatus = \"600\"\n",
            ":6:10: watch[0].health.status: '600' is not an HTTP status or range",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\n[watch.health]\ntcp = \"db\"\n",
            ":4: watch[0].health: tcp = 'db': write host:port",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\n[watch.health]\ntcp = \"127.0.0.1:5432\"\ntls_verify = false\n",
            ":4: watch[0].health: method, status, headers and tls_verify are for http checks only",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\nready = \"health\"\n",
            ":4: watch[0].ready: \"health\" needs a [watch.health] check to pass",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\nready = \"soon\"\n",
            ":4:9: watch[0].ready: unknown variant `soon`, expected one of `started`, `health`, `notify`",
        ),
        (
            "[[notify]]\nevents = [\"exited\"]\n",
            ":1: notify[0].command: a [[notify]] needs a command, a webhook or both",
        ),
        (
            "[[notify]]\ncommand = \"page\"\nevents = [\"died\"]\n",
            ":3:11: notify[0].events[0]: unknown variant `died`",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\n[[notify]]\ncommand = \"page\"\nwatches = [\"b\"]\n",
            ":6: notify[0].watches: no watch or group named 'b'",
        ),
        (
            "[[notify]]\nwebhook = \"ftp://example.com/\"\n",
            ":2: notify[0].webhook: 'ftp://example.com/': an http:// or https:// URL with a host",
        ),
    ];
    for (text, expected) in cases {
        let error = super::parse(Path::new("bad.toml"), text)
            .expect_err(&format!("accepted:\n{text}"))
            .to_string();
        let expected = format!("bad.toml{expected}");
        assert!(
            error.contains(&expected),
            "config:\n{text}\nexpected: {expected}\ngot: {error}"
        );
    }
}
