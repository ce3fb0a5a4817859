//! Records what `sealdesk audit` reports about this build (question 5): the source commit,
//! the profile, the target and the compiler. Nothing here changes what is compiled.

use std::process::Command;

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn main() {
    let commit = run("git", &["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = run(&rustc, &["-V"]).unwrap_or_else(|| "unknown".into());
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    println!("cargo:rustc-env=SEALDESK_BUILD_COMMIT={commit}");
    println!("cargo:rustc-env=SEALDESK_BUILD_RUSTC={rustc_version}");
    println!("cargo:rustc-env=SEALDESK_BUILD_PROFILE={}", env("PROFILE"));
    println!(
        "cargo:rustc-env=SEALDESK_BUILD_OPT_LEVEL={}",
        env("OPT_LEVEL")
    );
    println!("cargo:rustc-env=SEALDESK_BUILD_TARGET={}", env("TARGET"));
    // Rebuild when HEAD moves (a checkout or a commit); the paths are the workspace's.
    for path in ["../../.git/HEAD", "../../.git/refs/heads"] {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
