//! `resolve_with` downloading from a fake Hub: a small HTTP server on 127.0.0.1 serving repos
//! from temporary folders the way huggingface.co does (`/ORG/NAME/resolve/REV/FILE`, an
//! `X-Repo-Commit` header, 404 for missing files, a 302 to a CDN path for the weights, 401 for a
//! gated repo, a connection cut mid-file), checked for the cache layout, byte-identical files,
//! no second download, and one-line errors that say where we looked.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use trainer::resolve::{resolve_with, HubOptions};

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/hf/tiny-llama")
        .join(rel)
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    auth: Option<String>,
}

struct FakeHub {
    endpoint: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeHub {
    /// Serves `repos` (repo id to its folder) until the test process ends.
    fn start(repos: HashMap<String, PathBuf>) -> FakeHub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let _ = serve(stream, &repos, &log);
            }
        });
        FakeHub { endpoint, seen }
    }

    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn respond(
    mut stream: &TcpStream,
    status: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head += &format!("{k}: {v}\r\n");
    }
    if !headers.iter().any(|(k, _)| *k == "Content-Length") {
        head += &format!("Content-Length: {}\r\n", body.len());
    }
    head += "\r\n";
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

fn serve(
    stream: TcpStream,
    repos: &HashMap<String, PathBuf>,
    seen: &Mutex<Vec<Seen>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut auth = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':') {
            if k.eq_ignore_ascii_case("authorization") {
                auth = Some(v.trim().to_string());
            }
        }
    }
    seen.lock().unwrap().push(Seen {
        path: path.clone(),
        auth,
    });
    let not_found = |code: &str| {
        respond(
            &stream,
            "404 Not Found",
            &[("X-Error-Code", code.to_string())],
            b"not found",
        )
    };
    // The CDN the weights redirect to: /cdn/ORG/NAME/FILE.
    if let Some(rest) = path.strip_prefix("/cdn/") {
        let mut parts = rest.splitn(3, '/');
        let (org, name, file) = (parts.next(), parts.next(), parts.next());
        let (Some(org), Some(name), Some(file)) = (org, name, file) else {
            return not_found("EntryNotFound");
        };
        let Some(dir) = repos.get(&format!("{org}/{name}")) else {
            return not_found("RepoNotFound");
        };
        let Ok(body) = std::fs::read(dir.join(file)) else {
            return not_found("EntryNotFound");
        };
        if org == "cut" {
            // Promise more bytes than are sent, then close: a dropped connection.
            let len = (body.len() + 1000).to_string();
            return respond(&stream, "200 OK", &[("Content-Length", len)], &body);
        }
        return respond(&stream, "200 OK", &[], &body);
    }
    // The Hub: /ORG/NAME/resolve/REV/FILE.
    let parts: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
    let [org, name, "resolve", _rev, file] = parts[..] else {
        return not_found("RepoNotFound");
    };
    let repo = format!("{org}/{name}");
    if org == "gated" {
        return respond(
            &stream,
            "401 Unauthorized",
            &[("X-Error-Code", "GatedRepo".into())],
            b"gated",
        );
    }
    let Some(dir) = repos.get(&repo) else {
        return not_found("RepoNotFound");
    };
    if !dir.join(file).is_file() {
        return not_found("EntryNotFound");
    }
    let commit = ("X-Repo-Commit", SHA.to_string());
    if file.ends_with(".safetensors") {
        let to = format!("/cdn/{repo}/{file}");
        return respond(&stream, "302 Found", &[commit, ("Location", to)], b"");
    }
    let body = std::fs::read(dir.join(file))?;
    respond(&stream, "200 OK", &[commit], &body)
}

fn options(hub: &FakeHub, cache: &Path) -> HubOptions {
    HubOptions {
        cache: cache.to_path_buf(),
        endpoint: hub.endpoint.clone(),
        token: Some("hf_test".into()),
        offline: false,
    }
}

/// The tiny llama fixture plus tokenizer files, as a repo folder.
fn tiny_repo(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for file in ["config.json", "generation_config.json", "model.safetensors"] {
        std::fs::copy(fixture(file), dir.join(file)).unwrap();
    }
    std::fs::write(dir.join("tokenizer.json"), br#"{"model": {"type": "BPE"}}"#).unwrap();
    std::fs::write(dir.join("tokenizer_config.json"), b"{}").unwrap();
}

#[test]
fn downloads_into_the_hf_cache_once() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    tiny_repo(&src);
    let hub = FakeHub::start(HashMap::from([("hubtest/tiny-llama".into(), src.clone())]));
    let cache = tmp.path().join("cache");
    let opts = options(&hub, &cache);

    let dir = resolve_with("hubtest/tiny-llama", &opts).unwrap();
    let repo_dir = cache.join("models--hubtest--tiny-llama");
    assert_eq!(dir, repo_dir.join("snapshots").join(SHA));
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs/main")).unwrap(),
        SHA
    );
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "config.json",
            "generation_config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json"
        ]
    );
    for file in &files {
        assert_eq!(
            std::fs::read(dir.join(file)).unwrap(),
            std::fs::read(src.join(file)).unwrap(),
            "{file}"
        );
    }
    let seen = hub.requests();
    // The weights went through the redirect; the token went to the Hub.
    assert!(seen
        .iter()
        .any(|s| s.path == "/cdn/hubtest/tiny-llama/model.safetensors"));
    assert!(seen
        .iter()
        .filter(|s| s.path.contains("/resolve/"))
        .all(|s| s.auth.as_deref() == Some("Bearer hf_test")));
    // Files after config.json are fetched at the commit it reported.
    assert!(seen
        .iter()
        .any(|s| s.path == format!("/hubtest/tiny-llama/resolve/{SHA}/model.safetensors")));

    // Found in the cache the second time: no request.
    let count = seen.len();
    assert_eq!(resolve_with("hubtest/tiny-llama", &opts).unwrap(), dir);
    assert_eq!(hub.requests().len(), count);
}

#[test]
fn downloads_the_shards_an_index_names() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::copy(fixture("config.json"), src.join("config.json")).unwrap();
    let index = r#"{"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors",
        "b": "model-00002-of-00002.safetensors", "c": "model-00001-of-00002.safetensors"}}"#;
    std::fs::write(src.join("model.safetensors.index.json"), index).unwrap();
    std::fs::write(
        src.join("model-00001-of-00002.safetensors"),
        vec![1u8; 70_000],
    )
    .unwrap();
    std::fs::write(src.join("model-00002-of-00002.safetensors"), vec![2u8; 10]).unwrap();
    let hub = FakeHub::start(HashMap::from([("hubtest/sharded".into(), src.clone())]));
    let opts = options(&hub, &tmp.path().join("cache"));

    let dir = resolve_with("hubtest/sharded", &opts).unwrap();
    for file in [
        "config.json",
        "model.safetensors.index.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ] {
        assert_eq!(
            std::fs::read(dir.join(file)).unwrap(),
            std::fs::read(src.join(file)).unwrap(),
            "{file}"
        );
    }
    assert!(!dir.join("model.safetensors").exists());
}

#[test]
fn failures_are_one_line_errors_that_say_where_we_looked() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    tiny_repo(&src);
    let noconfig = tmp.path().join("noconfig");
    std::fs::create_dir_all(&noconfig).unwrap();
    std::fs::write(noconfig.join("README.md"), b"hi").unwrap();
    let hub = FakeHub::start(HashMap::from([
        ("cut/tiny-llama".into(), src.clone()),
        ("hubtest/noconfig".into(), noconfig),
    ]));
    let cache = tmp.path().join("cache");
    let opts = options(&hub, &cache);
    let err = |model: &str, opts: &HubOptions| {
        let e = resolve_with(model, opts).unwrap_err();
        assert!(!e.contains('\n'), "{e}");
        let looked = opts.repo_dir(model).join("snapshots").display().to_string();
        assert!(e.contains(&format!("looked in {looked}")), "{e}");
        assert!(e.contains(model), "{e}");
        e
    };

    let e = err("gated/llama", &opts);
    assert!(
        e.contains("gated") && e.contains("accept its license"),
        "{e}"
    );
    assert!(e.contains("HF_TOKEN"), "{e}");

    let e = err("hubtest/no-such-repo", &opts);
    assert!(e.contains("has no repo hubtest/no-such-repo"), "{e}");

    let e = err("hubtest/noconfig", &opts);
    assert!(e.contains("has no config.json"), "{e}");

    // A connection cut mid-file leaves nothing that looks like a model.
    let e = err("cut/tiny-llama", &opts);
    assert!(
        e.contains("model.safetensors") && e.contains("failed"),
        "{e}"
    );
    let snapshot = cache.join("models--cut--tiny-llama/snapshots").join(SHA);
    assert!(!snapshot.join("config.json").exists());
    assert!(!snapshot.join("model.safetensors").exists());
    let left: Vec<_> = std::fs::read_dir(&snapshot)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".part"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // Offline: the not-found message and no request.
    let count = hub.requests().len();
    let offline = HubOptions {
        offline: true,
        ..opts.clone()
    };
    let e = err("hubtest/tiny-llama", &offline);
    assert!(e.contains("is not on this machine"), "{e}");
    assert!(
        e.contains("huggingface-cli download hubtest/tiny-llama"),
        "{e}"
    );
    assert_eq!(hub.requests().len(), count);

    // Unreachable: a port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = HubOptions {
        endpoint: format!("http://127.0.0.1:{port}"),
        ..opts.clone()
    };
    let e = err("hubtest/tiny-llama", &dead);
    assert!(
        e.contains(&format!("could not reach http://127.0.0.1:{port}")),
        "{e}"
    );
    assert!(
        e.contains("huggingface-cli download hubtest/tiny-llama"),
        "{e}"
    );
}
