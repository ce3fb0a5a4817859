//! `sealdesk devices`: what this device trusts, and changes to it by the local user.
//!
//! Two stores in the data directory (see [`sealdesk_client::trust_store`]): the viewers
//! this device lets in (its pairing registry, when it is a host) and the hosts it has
//! paired with (pinned host keys, when it is a viewer). A DEVICE argument is a label, at
//! least 4 hex digits of a fingerprint, or a host's routing number; it is looked up in both.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};
use clap::Subcommand;
use sealdesk_auth::safety::SafetyNumber;
use sealdesk_auth::trust::{
    LookupError, PairedDevice, PairingRegistry, Permissions, PinnedHost, PinnedHosts,
};
use sealdesk_auth::DeviceFingerprint;
use sealdesk_client::store;
use sealdesk_client::trust_store::TrustFiles;
use sealdesk_proto::DeviceKey;

use crate::qr;
use crate::text::{pad, safe, safety_lines, utc};

/// The `devices` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum DevicesCommand {
    /// List this device's fingerprint, the viewers paired with it and the hosts it pinned.
    List,
    /// Show the full fingerprint of this device, or of DEVICE.
    Show {
        /// A label, ≥4 hex digits of a fingerprint, or a host number. Default: this device.
        device: Option<String>,
    },
    /// Rename a paired viewer or a pinned host.
    Label {
        /// A label, ≥4 hex digits of a fingerprint, or a host number.
        device: String,
        /// The new label (1–64 bytes, no control characters).
        new_label: String,
    },
    /// Revoke a paired viewer: it can no longer connect (it stays listed as revoked).
    Revoke {
        /// A label or ≥4 hex digits of the viewer's fingerprint.
        device: String,
    },
    /// Set what a paired viewer may do, e.g. `view,input,unattended` (or `all`, `none`).
    Permit {
        /// A label or ≥4 hex digits of the viewer's fingerprint.
        device: String,
        /// Comma-separated: view, input, clipboard, files, record, unattended; or all/none.
        perms: String,
    },
    /// Forget a pinned host (to pair with it again, e.g. after it was reinstalled).
    Forget {
        /// A label, ≥4 hex digits of the host's fingerprint, or its host number.
        host: String,
    },
    /// Show the safety number of this device and DEVICE, as digits and as a QR code.
    Verify {
        /// A label, ≥4 hex digits of a fingerprint, or a host number.
        device: String,
        /// Also write the QR code as a PNG image.
        #[arg(long, value_name = "FILE")]
        png: Option<PathBuf>,
        /// Also write the QR code as an SVG image.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
    },
}

/// Runs a `devices` subcommand.
pub(crate) fn run(cmd: DevicesCommand, data_dir: Option<&Path>) -> anyhow::Result<()> {
    let dir = store::resolve_data_dir(data_dir)?;
    let files = TrustFiles::new(&dir);
    match cmd {
        DevicesCommand::List => list(&dir, &files),
        DevicesCommand::Show { device } => show(&dir, &files, device.as_deref()),
        DevicesCommand::Label { device, new_label } => relabel(&files, &device, &new_label),
        DevicesCommand::Revoke { device } => revoke(&files, &device),
        DevicesCommand::Permit { device, perms } => permit(&files, &device, &perms),
        DevicesCommand::Forget { host } => forget(&files, &host),
        DevicesCommand::Verify { device, png, svg } => {
            verify(&dir, &files, &device, png.as_deref(), svg.as_deref())
        }
    }
}

/// This device's public key (the identity is created on first use, as `sealdesk identity` does).
fn own_key(dir: &Path) -> anyhow::Result<DeviceKey> {
    let (key, created) = store::load_or_create_identity(dir)?;
    if created {
        println!("created a new identity key in {}", dir.display());
    }
    Ok(key.public())
}

/// What a DEVICE argument named: a paired viewer, a pinned host, or both (two devices
/// that paired both ways). When both are set they hold the same key.
#[derive(Debug, Clone)]
struct Found {
    viewer: Option<PairedDevice>,
    host: Option<PinnedHost>,
}

impl Found {
    fn key(&self) -> Option<DeviceKey> {
        self.viewer
            .as_ref()
            .map(|d| d.key)
            .or(self.host.as_ref().map(|h| h.key))
    }

    fn label(&self) -> &str {
        match (&self.viewer, &self.host) {
            (Some(d), _) => &d.label,
            (None, Some(h)) => &h.label,
            (None, None) => "",
        }
    }
}

/// Looks `reference` up in both stores. The same key in both is one device; two
/// different devices is ambiguous.
fn resolve(reg: &PairingRegistry, pins: &PinnedHosts, reference: &str) -> anyhow::Result<Found> {
    match (reg.find(reference), pins.find(reference)) {
        (Ok(d), Ok(h)) if d.key != h.key => bail!(
            "{reference:?} matches both paired viewer {:?} ({}) and pinned host {:?} ({}); \
             use more fingerprint digits",
            safe(&d.label),
            d.fingerprint().short(),
            safe(&h.label),
            h.fingerprint().short()
        ),
        (Err(e @ LookupError::Ambiguous { .. }), _)
        | (_, Err(e @ LookupError::Ambiguous { .. })) => Err(e.into()),
        (Err(e), Err(_)) => Err(anyhow!("{e}; `sealdesk devices list` shows them all")),
        (d, h) => Ok(Found {
            viewer: d.ok().cloned(),
            host: h.ok().cloned(),
        }),
    }
}

/// Resolves `reference` and returns its key, for commands that need one.
fn key_of(found: &Found) -> anyhow::Result<DeviceKey> {
    found
        .key()
        .ok_or_else(|| anyhow!("internal error: a lookup found nothing"))
}

fn list(dir: &Path, files: &TrustFiles) -> anyhow::Result<()> {
    let me = own_key(dir)?;
    let reg = files.registry()?;
    let pins = files.pinned()?;
    println!("this device: {}", DeviceFingerprint::of(&me));
    println!();
    if reg.devices().is_empty() {
        println!("paired viewers: none (pair one with `sealdesk pair host`)");
    } else {
        println!("paired viewers (may connect to this device):");
        let rows: Vec<[String; 5]> = reg
            .devices()
            .iter()
            .map(|d| {
                [
                    safe(&d.label),
                    d.fingerprint().short(),
                    d.permissions.to_string(),
                    utc(d.added_at),
                    if d.revoked { "REVOKED" } else { "active" }.to_owned(),
                ]
            })
            .collect();
        table(
            [
                "LABEL",
                "FINGERPRINT",
                "PERMISSIONS",
                "ADDED (UTC)",
                "STATUS",
            ],
            &rows,
        );
    }
    println!();
    if pins.hosts().is_empty() {
        println!("pinned hosts: none (pair with one with `sealdesk pair connect CODE`)");
    } else {
        println!("pinned hosts (this device connects to):");
        let rows: Vec<[String; 4]> = pins
            .hosts()
            .iter()
            .map(|h| {
                [
                    safe(&h.label),
                    h.routing.grouped(),
                    h.fingerprint().short(),
                    utc(h.added_at),
                ]
            })
            .collect();
        table(
            ["LABEL", "HOST NUMBER", "FINGERPRINT", "ADDED (UTC)"],
            &rows,
        );
    }
    Ok(())
}

/// Prints rows under a header, columns padded to their widest cell.
fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; N]| {
        let padded: Vec<String> = cells.iter().zip(widths).map(|(c, w)| pad(c, w)).collect();
        println!("  {}", padded.join("  ").trim_end());
    };
    line(header);
    for row in rows {
        line(row.each_ref().map(String::as_str));
    }
}

fn show(dir: &Path, files: &TrustFiles, device: Option<&str>) -> anyhow::Result<()> {
    let Some(reference) = device else {
        println!("this device: {}", DeviceFingerprint::of(&own_key(dir)?));
        return Ok(());
    };
    let found = resolve(&files.registry()?, &files.pinned()?, reference)?;
    if let Some(d) = &found.viewer {
        println!("paired viewer {:?}", safe(&d.label));
        println!("  permissions: {}", d.permissions);
        println!("  added:       {} UTC", utc(d.added_at));
        if d.revoked {
            println!("  status:      REVOKED");
        }
    }
    if let Some(h) = &found.host {
        println!("pinned host {:?}", safe(&h.label));
        println!("  host number: {}", h.routing.grouped());
        println!("  added:       {} UTC", utc(h.added_at));
    }
    println!("  fingerprint: {}", DeviceFingerprint::of(&key_of(&found)?));
    Ok(())
}

fn relabel(files: &TrustFiles, reference: &str, label: &str) -> anyhow::Result<()> {
    sealdesk_auth::trust::check_label(label).map_err(|e| anyhow!(e))?;
    let found = resolve(&files.registry()?, &files.pinned()?, reference)?;
    if let Some(d) = &found.viewer {
        files.update_registry(|reg| {
            reg.relabel(&d.fingerprint().to_string(), label)
                .map(|_| ())
                .map_err(|e| anyhow!(e))
        })?;
        println!(
            "paired viewer {} is now labelled {:?}",
            d.fingerprint().short(),
            safe(label)
        );
    }
    if let Some(h) = &found.host {
        files.update_pinned(|pins| {
            pins.relabel(&h.fingerprint().to_string(), label)
                .map(|_| ())
                .map_err(|e| anyhow!(e))
        })?;
        println!(
            "pinned host {} is now labelled {:?}",
            h.routing.grouped(),
            safe(label)
        );
    }
    Ok(())
}

/// The paired viewer `reference` names; a pinned host is an error that says what to use.
fn viewer_for(files: &TrustFiles, reference: &str, verb: &str) -> anyhow::Result<PairedDevice> {
    match resolve(&files.registry()?, &files.pinned()?, reference)? {
        Found {
            viewer: Some(d), ..
        } => Ok(d),
        Found { host: Some(h), .. } => bail!(
            "{:?} is a host this device connects to, not a viewer paired with it: only viewers \
             can be {verb}; to stop trusting a host use `sealdesk devices forget {}`",
            safe(&h.label),
            h.routing.grouped()
        ),
        Found { .. } => bail!("no device matches {reference:?}"),
    }
}

fn revoke(files: &TrustFiles, reference: &str) -> anyhow::Result<()> {
    let d = viewer_for(files, reference, "revoked")?;
    if d.revoked {
        println!(
            "{:?} ({}) was already revoked",
            safe(&d.label),
            d.fingerprint().short()
        );
        return Ok(());
    }
    files.update_registry(|reg| {
        reg.revoke(&d.fingerprint().to_string())?;
        Ok::<_, anyhow::Error>(())
    })?;
    println!(
        "revoked {:?} ({}): it can no longer connect. Pairing it again with a code re-activates it.",
        safe(&d.label),
        d.fingerprint().short()
    );
    Ok(())
}

fn permit(files: &TrustFiles, reference: &str, perms: &str) -> anyhow::Result<()> {
    let permissions = Permissions::parse(perms).map_err(|e| anyhow!(e))?;
    let d = viewer_for(files, reference, "given permissions")?;
    files.update_registry(|reg| {
        reg.set_permissions(&d.fingerprint().to_string(), permissions)?;
        Ok::<_, anyhow::Error>(())
    })?;
    let note = if d.revoked {
        " (but it is revoked)"
    } else {
        ""
    };
    println!(
        "{:?} ({}) may now use: {permissions}{note}",
        safe(&d.label),
        d.fingerprint().short(),
    );
    Ok(())
}

fn forget(files: &TrustFiles, reference: &str) -> anyhow::Result<()> {
    let h = match resolve(&files.registry()?, &files.pinned()?, reference)? {
        Found { host: Some(h), .. } => h,
        Found {
            viewer: Some(d), ..
        } => bail!(
            "{:?} is a viewer paired with this device, not a pinned host; \
             use `sealdesk devices revoke` to stop it connecting",
            safe(&d.label)
        ),
        Found { .. } => bail!("no device matches {reference:?}"),
    };
    files.update_pinned(|pins| {
        pins.forget(&h.fingerprint().to_string())?;
        Ok::<_, anyhow::Error>(())
    })?;
    println!(
        "forgot host {:?} ({}, {}); pair again with a new code to connect to it",
        safe(&h.label),
        h.routing.grouped(),
        h.fingerprint().short()
    );
    Ok(())
}

fn verify(
    dir: &Path,
    files: &TrustFiles,
    reference: &str,
    png: Option<&Path>,
    svg: Option<&Path>,
) -> anyhow::Result<()> {
    let me = own_key(dir)?;
    let found = resolve(&files.registry()?, &files.pinned()?, reference)?;
    let number = SafetyNumber::of(&me, &key_of(&found)?);
    let code = qr::code(&number.qr_text())?;
    let label = safe(found.label());
    println!("safety number of this device and {label:?}:");
    println!();
    println!("{}", safety_lines(&number, "    "));
    println!();
    println!(
        "Compare it with what `sealdesk devices verify` shows on {label:?}, or scan the code \
         below. If they differ, someone is in the middle: do not use this pairing."
    );
    println!("{}", qr::terminal(&code));
    if let Some(path) = png {
        qr::write_file(path, &qr::png_bytes(&code)?)?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = svg {
        qr::write_file(path, qr::svg_text(&code).as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;
    use sealdesk_auth::IdentityKey;
    use sealdesk_proto::RoutingNumber;

    #[test]
    fn lookups_span_both_stores() {
        let k = |n: u8| IdentityKey::from_seed(&[n; 32]).public();
        let mut reg = PairingRegistry::new();
        reg.pair(PairedDevice {
            key: k(1),
            label: "laptop".into(),
            permissions: Permissions::DEFAULT_PAIRED,
            added_at: 0,
            revoked: false,
        })
        .unwrap();
        let mut pins = PinnedHosts::new();
        pins.pin(PinnedHost {
            routing: RoutingNumber::new(123_456_789).unwrap(),
            key: k(2),
            label: "laptop".into(),
            added_at: 0,
        })
        .unwrap();
        let e = resolve(&reg, &pins, "laptop").unwrap_err().to_string();
        assert!(e.contains("matches both"), "{e}");
        let host = resolve(&reg, &pins, "123 456 789").unwrap();
        assert!(host.viewer.is_none() && host.host.is_some());
        let fpr = DeviceFingerprint::of(&k(1)).short();
        let viewer = resolve(&reg, &pins, &fpr[..9]).unwrap();
        assert!(viewer.viewer.is_some() && viewer.host.is_none());
        // The same device paired both ways is one device.
        pins.pin(PinnedHost {
            routing: RoutingNumber::new(987_654_321).unwrap(),
            key: k(1),
            label: "laptop too".into(),
            added_at: 0,
        })
        .unwrap();
        let both = resolve(&reg, &pins, &fpr[..9]).unwrap();
        assert!(both.viewer.is_some() && both.host.is_some());
        let e = resolve(&reg, &pins, "nobody").unwrap_err().to_string();
        assert!(e.contains("no device matches"), "{e}");
    }
}
