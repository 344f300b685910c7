//! The file as written: every value keeps where it stood (`Spanned`), so validation can point at
//! `file:line:col`. Nothing here is checked beyond YAML types; `validate` turns it into `Desired`.

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::validate::{Checker, Collected};

/// Where a value stands in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loc {
    /// 1-based line.
    pub line: u64,
    /// 1-based column.
    pub column: u64,
}

/// A value and where it stands: what validation needs to say `file:line:col`. Read through
/// serde-saphyr's `Spanned`, or built by the fast reader (`fast`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Spanned<T> {
    pub value: T,
    pub referenced: Loc,
}

impl<T> Spanned<T> {
    pub fn new(value: T, referenced: Loc) -> Self {
        Spanned { value, referenced }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Spanned<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = serde_saphyr::Spanned::<T>::deserialize(d)?;
        Ok(Spanned {
            value: s.value,
            referenced: Loc {
                line: s.referenced.line(),
                column: s.referenced.column(),
            },
        })
    }
}

/// The top level.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    #[serde(default)]
    pub services: Option<Services>,
    pub host: Option<Spanned<RawHost>>,
}

/// `services`, validated entry by entry as the parser hands them over: the raw tree of a large
/// file is never held whole (10,000 services with 10 reals each would take ~50 MB as spanned
/// values, and allocating it cost more than parsing).
#[derive(Debug, Default)]
pub(crate) struct Services(pub Collected);

impl<'de> Deserialize<'de> for Services {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Services;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of services")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Services, A::Error> {
                let mut checker = Checker { problems: vec![] };
                let mut out = Collected::default();
                while let Some(s) = seq.next_element::<Spanned<RawService>>()? {
                    checker.collect(s, &mut out);
                }
                out.problems = checker.problems;
                Ok(Services(out))
            }
        }
        d.deserialize_seq(V)
    }
}

/// The `host` section: what this machine is in the cluster.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHost {
    pub role: Option<Spanned<String>>,
    pub interface: Option<Spanned<String>>,
    pub vips: Option<Vec<Spanned<String>>>,
}

/// One entry of `services`.
#[derive(Debug, Default, Deserialize)]
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
    // Boxed: a check is rare and large, and reals are many (the vector of them grows by moves).
    pub check: Option<Box<Spanned<RawCheck>>>,
    pub on_failure: Option<Spanned<String>>,
    pub fallback: Option<Spanned<String>>,
    pub quorum: Option<Spanned<i64>>,
    #[serde(default)]
    pub reals: Vec<Spanned<RawReal>>,
}

/// A health check, on a service (for all its reals) or on one real (its fields override the
/// service's).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCheck {
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
    pub port: Option<Spanned<i64>>,
    pub path: Option<Spanned<String>>,
    pub expect_status: Option<Vec<Spanned<i64>>>,
    pub expect_body: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    pub command: Option<Vec<Spanned<String>>>,
    pub interval: Option<Spanned<Scalar>>,
    pub timeout: Option<Spanned<Scalar>>,
    pub rise: Option<Spanned<i64>>,
    pub fall: Option<Spanned<i64>>,
    pub initial: Option<Spanned<String>>,
}

impl RawCheck {
    /// This check with `over`'s fields taking precedence.
    pub fn overridden_by(&self, over: &RawCheck) -> RawCheck {
        RawCheck {
            kind: over.kind.clone().or_else(|| self.kind.clone()),
            port: over.port.clone().or_else(|| self.port.clone()),
            path: over.path.clone().or_else(|| self.path.clone()),
            expect_status: over
                .expect_status
                .clone()
                .or_else(|| self.expect_status.clone()),
            expect_body: over
                .expect_body
                .clone()
                .or_else(|| self.expect_body.clone()),
            host: over.host.clone().or_else(|| self.host.clone()),
            command: over.command.clone().or_else(|| self.command.clone()),
            interval: over.interval.clone().or_else(|| self.interval.clone()),
            timeout: over.timeout.clone().or_else(|| self.timeout.clone()),
            rise: over.rise.clone().or_else(|| self.rise.clone()),
            fall: over.fall.clone().or_else(|| self.fall.clone()),
            initial: over.initial.clone().or_else(|| self.initial.clone()),
        }
    }
}

/// One entry of `reals`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReal {
    pub address: Option<Spanned<String>>,
    pub weight: Option<Spanned<i64>>,
    pub forward: Option<Spanned<String>>,
    pub max_connections: Option<Spanned<i64>>,
    pub min_connections: Option<Spanned<i64>>,
    // Boxed: a check is rare and large, and reals are many (the vector of them grows by moves).
    pub check: Option<Box<Spanned<RawCheck>>>,
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
