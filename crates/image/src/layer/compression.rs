use std::io::{self, Read};

use flate2::read::MultiGzDecoder;
use oci_spec::image::MediaType;

use crate::layer::LayerError;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

impl Compression {
    /// Detects the compression from the first bytes of a layer (at least four;
    /// `BufRead::fill_buf` gives them without consuming). Media types lie in the
    /// wild, so content wins over a descriptor's claim.
    pub fn detect(head: &[u8]) -> Result<Self, LayerError> {
        if head.starts_with(GZIP_MAGIC) {
            Ok(Compression::Gzip)
        } else if head.starts_with(ZSTD_MAGIC) {
            Ok(Compression::Zstd)
        } else {
            Ok(Compression::None)
        }
    }

    /// The compression a layer descriptor's media type declares, OCI or Docker.
    pub fn from_media_type(media_type: &MediaType) -> Result<Self, LayerError> {
        match media_type {
            MediaType::ImageLayer | MediaType::ImageLayerNonDistributable => Ok(Compression::None),
            MediaType::ImageLayerGzip | MediaType::ImageLayerNonDistributableGzip => {
                Ok(Compression::Gzip)
            }
            MediaType::ImageLayerZstd | MediaType::ImageLayerNonDistributableZstd => {
                Ok(Compression::Zstd)
            }
            MediaType::Other(s)
                if s == "application/vnd.docker.image.rootfs.diff.tar.gzip"
                    || s == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" =>
            {
                Ok(Compression::Gzip)
            }
            MediaType::Other(s) if s == "application/vnd.docker.image.rootfs.diff.tar" => {
                Ok(Compression::None)
            }
            other => Err(LayerError::UnknownMediaType(other.to_string())),
        }
    }

    /// `reader`'s content, decompressed. Concatenated gzip members are read
    /// as one stream, as `gzip -d` does.
    pub fn decoder<'a, R: Read + 'a>(self, reader: R) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Compression::None => Box::new(reader),
            Compression::Gzip => Box::new(MultiGzDecoder::new(reader)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(reader)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_from_magic_bytes() {
        assert_eq!(
            Compression::detect(&[0x1f, 0x8b, 8, 0]).unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            Compression::detect(b"etc/\0\0\0").unwrap(),
            Compression::None
        );
        assert_eq!(Compression::detect(b"").unwrap(), Compression::None);
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]).unwrap(),
            Compression::Zstd
        );
    }

    #[test]
    fn decoders_round_trip() {
        let plain = b"a layer's bytes, a layer's bytes".repeat(100);
        let zstd = zstd::stream::encode_all(&plain[..], 3).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &plain).unwrap();
        let gz = gz.finish().unwrap();
        for (bytes, c) in [
            (&plain[..], Compression::None),
            (&gz[..], Compression::Gzip),
            (&zstd[..], Compression::Zstd),
        ] {
            assert_eq!(Compression::detect(bytes).unwrap(), c);
            let mut out = Vec::new();
            c.decoder(bytes).unwrap().read_to_end(&mut out).unwrap();
            assert_eq!(out, plain, "{c:?}");
        }
    }

    #[test]
    fn maps_oci_and_docker_media_types() {
        let cases = [
            ("application/vnd.oci.image.layer.v1.tar", Compression::None),
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                Compression::Gzip,
            ),
        ];
        for (mt, want) in cases {
            assert_eq!(
                Compression::from_media_type(&MediaType::from(mt)).unwrap(),
                want,
                "{mt}"
            );
        }
        let zstd = MediaType::from("application/vnd.oci.image.layer.v1.tar+zstd");
        assert_eq!(
            Compression::from_media_type(&zstd).unwrap(),
            Compression::Zstd
        );
        let config = MediaType::from("application/vnd.oci.image.config.v1+json");
        let err = Compression::from_media_type(&config).unwrap_err();
        assert!(err.to_string().contains("image.config.v1+json"), "{err}");
    }
}
