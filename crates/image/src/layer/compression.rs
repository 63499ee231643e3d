use oci_spec::image::MediaType;

use crate::layer::LayerError;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
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
            Err(LayerError::UnsupportedCompression("zstd"))
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
                Err(LayerError::UnsupportedCompression("zstd"))
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
        let err = Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "zstd-compressed layers are not supported yet"
        );
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
        assert!(matches!(
            Compression::from_media_type(&zstd),
            Err(LayerError::UnsupportedCompression("zstd"))
        ));
        let config = MediaType::from("application/vnd.oci.image.config.v1+json");
        let err = Compression::from_media_type(&config).unwrap_err();
        assert!(err.to_string().contains("image.config.v1+json"), "{err}");
    }
}
