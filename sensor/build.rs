//! Builds the XDP program (`sensor-ebpf/sensor.bpf.c`) with clang into `OUT_DIR`, where
//! `src/ebpf.rs` embeds it, so the `otsensor` binary runs with no file beside it.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const INSTALL_HINT: &str = "apt-get install clang llvm libbpf-dev linux-libc-dev";

fn main() {
    let ebpf_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sensor-ebpf");
    for file in ["sensor.bpf.c", "shared.h", "parsing.h"] {
        println!("cargo:rerun-if-changed={}", ebpf_dir.join(file).display());
    }
    println!("cargo:rerun-if-env-changed=CLANG");

    // The program is Linux-only; other targets build the crate without it.
    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }

    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap_or_else(|_| fail("OUT_DIR is not set")));
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_string());

    // The kernel uapi headers include <asm/types.h>, which Debian keeps under the
    // multiarch directory of the *target* architecture.
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let multiarch = match arch.as_str() {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        "arm" => "arm-linux-gnueabihf",
        "riscv64" => "riscv64-linux-gnu",
        "powerpc64" => "powerpc64le-linux-gnu",
        "s390x" => "s390x-linux-gnu",
        _ => "x86_64-linux-gnu",
    };
    let endian = match env::var("CARGO_CFG_TARGET_ENDIAN").as_deref() {
        Ok("big") => "bpfeb",
        _ => "bpfel",
    };

    let object = out_dir.join("sensor.bpf.o");
    let output = Command::new(&clang)
        .args(["-O2", "-g", "-target", endian, "-Wall", "-Werror"])
        .arg(format!("-I/usr/include/{multiarch}"))
        .arg("-I")
        .arg(&ebpf_dir)
        .arg("-c")
        .arg(ebpf_dir.join("sensor.bpf.c"))
        .arg("-o")
        .arg(&object)
        .output();
    match output {
        Err(error) => fail(&format!(
            "cannot run `{clang}` to build the XDP program ({error}); install it with `{INSTALL_HINT}` (Debian/Ubuntu) or set CLANG to a clang binary"
        )),
        Ok(output) if !output.status.success() => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let hint = if stderr.contains("file not found") {
                format!(" (missing headers: `{INSTALL_HINT}`)")
            } else {
                String::new()
            };
            fail(&format!(
                "`{clang}` failed to build sensor-ebpf/sensor.bpf.c{hint}:\n{stderr}"
            ))
        }
        Ok(_) => {}
    }
}

fn fail(message: &str) -> ! {
    // A panic in a build script is shown with its message as the build error.
    panic!("otsensor build: {message}");
}
