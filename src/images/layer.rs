//! Image layers as the OCI image spec defines them: a tar archive of
//! files, gzip-compressed, known by two SHA-256 digests (the compressed
//! blob's, which the manifest names, and the archive's own, the config's
//! `diff_id`). Every entry is owned by root, carries the same modification
//! time and is written in path order, and gzip's header carries no time
//! or name, so the same files make the same digests on any machine.

use std::collections::BTreeMap;
use std::io::Write;

use flate2::Compression;

/// What a path in a layer is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Dir { mode: u32 },
    File { contents: Vec<u8>, mode: u32 },
    Symlink { target: String },
}

/// The files of one layer, collected in any order and written in path
/// order.
#[derive(Debug, Default)]
pub struct LayerBuilder {
    entries: BTreeMap<String, Entry>,
}

/// A built layer: the compressed blob and its two digests.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The gzip-compressed tar archive.
    pub blob: Vec<u8>,
    /// `sha256:…` of `blob`.
    pub digest: String,
    /// `sha256:…` of the uncompressed archive.
    pub diff_id: String,
}

impl LayerBuilder {
    /// A directory (`path` relative to the root, no leading `/`).
    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        self.parents(path);
        self.entries.insert(path.to_owned(), Entry::Dir { mode });
        self
    }

    /// A regular file, with any missing parent directories (mode 0755).
    pub fn file(&mut self, path: &str, contents: Vec<u8>, mode: u32) -> &mut Self {
        self.parents(path);
        self.entries
            .insert(path.to_owned(), Entry::File { contents, mode });
        self
    }

    /// A symbolic link to `target`, with any missing parent directories.
    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.parents(path);
        self.entries.insert(
            path.to_owned(),
            Entry::Symlink {
                target: target.to_owned(),
            },
        );
        self
    }

    fn parents(&mut self, path: &str) {
        let mut at = 0;
        while let Some(slash) = path[at..].find('/') {
            let parent = &path[..at + slash];
            self.entries
                .entry(parent.to_owned())
                .or_insert(Entry::Dir { mode: 0o755 });
            at += slash + 1;
        }
    }

    /// Writes the archive (every entry's time `mtime`, seconds since the
    /// epoch) and compresses it.
    pub fn build(&self, mtime: u64) -> std::io::Result<Layer> {
        let mut archive = tar::Builder::new(Vec::new());
        archive.mode(tar::HeaderMode::Deterministic);
        for (path, entry) in &self.entries {
            let mut header = tar::Header::new_ustar();
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(mtime);
            match entry {
                Entry::Dir { mode } => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(*mode);
                    header.set_size(0);
                    archive.append_data(&mut header, format!("{path}/"), std::io::empty())?;
                }
                Entry::File { contents, mode } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(contents.len() as u64);
                    archive.append_data(&mut header, path, contents.as_slice())?;
                }
                Entry::Symlink { target } => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    archive.append_link(&mut header, path, target)?;
                }
            }
        }
        let tar = archive.into_inner()?;
        let mut gzip = flate2::GzBuilder::new()
            .mtime(0)
            .operating_system(255)
            .write(Vec::new(), Compression::default());
        gzip.write_all(&tar)?;
        let blob = gzip.finish()?;
        Ok(Layer {
            digest: sha256(&blob),
            diff_id: sha256(&tar),
            blob,
        })
    }
}

/// `sha256:` and the hex SHA-256 of `bytes`, as OCI names content.
pub fn sha256(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn entries(layer: &Layer) -> Vec<(String, u64, u64, u64, u32)> {
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(layer.blob.as_slice())
            .read_to_end(&mut tar)
            .expect("gunzip");
        assert_eq!(
            sha256(&tar),
            layer.diff_id,
            "diff_id is the archive's digest"
        );
        let mut archive = tar::Archive::new(tar.as_slice());
        archive
            .entries()
            .expect("entries")
            .map(|entry| {
                let entry = entry.expect("entry");
                let header = entry.header();
                (
                    entry.path().expect("path").display().to_string(),
                    header.uid().expect("uid"),
                    header.gid().expect("gid"),
                    header.mtime().expect("mtime"),
                    header.mode().expect("mode"),
                )
            })
            .collect()
    }

    #[test]
    fn the_same_files_in_any_order_make_the_same_digests() {
        let mut one = LayerBuilder::default();
        one.file("usr/bin/a", b"a".to_vec(), 0o755)
            .symlink("usr/bin/b", "a")
            .file("etc/passwd", b"root".to_vec(), 0o644);
        let mut two = LayerBuilder::default();
        two.file("etc/passwd", b"root".to_vec(), 0o644)
            .symlink("usr/bin/b", "a")
            .file("usr/bin/a", b"a".to_vec(), 0o755);
        let (one, two) = (one.build(7).expect("one"), two.build(7).expect("two"));
        assert_eq!(one.digest, two.digest);
        assert_eq!(one.diff_id, two.diff_id);
        assert_eq!(one.digest, sha256(&one.blob));

        let mut changed = LayerBuilder::default();
        changed
            .file("etc/passwd", b"root".to_vec(), 0o644)
            .symlink("usr/bin/b", "a")
            .file("usr/bin/a", b"a".to_vec(), 0o700);
        assert_ne!(
            changed.build(7).expect("changed").digest,
            one.digest,
            "a mode is part of the layer"
        );
    }

    #[test]
    fn entries_are_owned_by_root_at_one_time_parents_first() {
        let mut layer = LayerBuilder::default();
        layer
            .file("usr/bin/mesh-proxy", b"binary".to_vec(), 0o755)
            .dir("tmp", 0o1777);
        let listed = entries(&layer.build(1_700_000_000).expect("layer"));
        let paths: Vec<&str> = listed.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(paths, ["tmp/", "usr/", "usr/bin/", "usr/bin/mesh-proxy"]);
        assert!(
            listed
                .iter()
                .all(|(_, uid, gid, mtime, _)| (*uid, *gid, *mtime) == (0, 0, 1_700_000_000)),
            "{listed:?}"
        );
        assert_eq!(listed[0].4, 0o1777);
        assert_eq!(listed[3].4, 0o755);
    }
}
