//! The file as written: every value keeps where it stood (`Spanned`), so validation can point at
//! `file:line:col`. Nothing here is checked beyond YAML types; `validate` turns it into `Desired`.

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_saphyr::Spanned;

/// The top level.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    #[serde(default)]
    pub services: Option<Vec<Spanned<RawService>>>,
    pub host: Option<Spanned<RawHost>>,
}

/// The `host` section: what this machine is in the cluster.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHost {
    pub role: Option<Spanned<String>>,
    pub interface: Option<Spanned<String>>,
    pub vips: Option<Vec<Spanned<String>>>,
}

/// One entry of `services`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawService {
    pub name: Option<Spanned<String>>,
    pub address: Option<Spanned<String>>,
    pub fwmark: Option<Spanned<i64>>,
    pub family: Option<Spanned<String>>,
    pub protocol: Option<Spanned<String>>,
    pub scheduler: Option<Spanned<String>>,
    pub forward: Option<Spanned<String>>,
    pub persistence: Option<Spanned<Persistence>>,
    pub flags: Option<Vec<Spanned<String>>>,
    pub drain_timeout: Option<Spanned<Scalar>>,
    #[serde(default)]
    pub reals: Vec<Spanned<RawReal>>,
}

/// One entry of `reals`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReal {
    pub address: Option<Spanned<String>>,
    pub weight: Option<Spanned<i64>>,
    pub forward: Option<Spanned<String>>,
    pub max_connections: Option<Spanned<i64>>,
    pub min_connections: Option<Spanned<i64>>,
}

/// A scalar that may be written as a number or a string (`300`, `300s`, `255.255.255.0`, `24`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scalar {
    Int(i128),
    Str(String),
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number or a string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v.into()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `persistence: 300s` or `persistence: {timeout: 300s, netmask: 255.255.255.0}`.
#[derive(Debug)]
pub(crate) enum Persistence {
    /// Just the timeout.
    Short(Scalar),
    /// The long form.
    Full(Box<PersistenceMap>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PersistenceMap {
    pub timeout: Option<Spanned<Scalar>>,
    pub netmask: Option<Spanned<Scalar>>,
    pub engine: Option<Spanned<String>>,
}

impl<'de> Deserialize<'de> for Persistence {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Persistence;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a duration such as 300s, or a mapping with timeout and netmask")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Persistence, E> {
                Ok(Persistence::Short(Scalar::Int(v.into())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Persistence, E> {
                Ok(Persistence::Short(Scalar::Int(v.into())))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Persistence, E> {
                Ok(Persistence::Short(Scalar::Str(v.to_owned())))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Persistence, A::Error> {
                let m = PersistenceMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Persistence::Full(Box::new(m)))
            }
        }
        d.deserialize_any(V)
    }
}
