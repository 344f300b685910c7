//! The file as written: every value keeps where it stood (`Spanned`), so validation can point at
//! `file:line:col`. Nothing here is interpreted: every scalar is kept as the text YAML read
//! (numbers and durations included), whether it was quoted, and whether it was null, so that
//! `validate` applies one rule to each value instead of the YAML library's type guesses (a
//! quoted `"5"` taken as a number, `1_000`, `+5` or `0x1f` as integers, an empty value as "use
//! the default").

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
    /// The value; its default when it was written as null.
    pub value: T,
    /// Where it is used (for an alias, the alias).
    pub referenced: Loc,
    /// The bytes the value takes where it is defined, quotes included: a scalar whose text is
    /// shorter than this was quoted (or escaped, or folded over lines).
    pub len: u32,
    /// Where the value is defined, in bytes from the start of the text (0 from the fast
    /// reader, whose text is the file's).
    pub start: u32,
    /// Written as null: `~`, `null` or nothing at all after the key. YAML reads an empty
    /// template value this way, and it must not mean "the default".
    pub null: bool,
}

impl<T> Spanned<T> {
    /// A value the fast reader built (never null).
    pub fn new(value: T, referenced: Loc) -> Self {
        Spanned {
            value,
            referenced,
            len: 0,
            start: 0,
            null: false,
        }
    }
}

impl Spanned<String> {
    /// A plain scalar as the fast reader reads it: its text is what the file holds.
    pub fn plain(value: &str, referenced: Loc) -> Self {
        Spanned {
            len: u32::try_from(value.len()).unwrap_or(u32::MAX),
            value: value.to_owned(),
            referenced,
            start: 0,
            null: false,
        }
    }

    /// True when the text was not written plain: quoted, escaped or folded. Only a plain
    /// scalar can be a number.
    pub fn quoted(&self) -> bool {
        self.len as usize != self.value.len()
    }
}

impl<'de, T: Deserialize<'de> + Default> Deserialize<'de> for Spanned<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = serde_saphyr::Spanned::<Option<T>>::deserialize(d)?;
        let len = s.defined.span().byte_len().unwrap_or(0);
        let start = s.defined.span().byte_offset().unwrap_or(0);
        Ok(Spanned {
            null: s.value.is_none(),
            value: s.value.unwrap_or_default(),
            referenced: Loc {
                line: s.referenced.line(),
                column: s.referenced.column(),
            },
            len: u32::try_from(len).unwrap_or(u32::MAX),
            start: u32::try_from(start).unwrap_or(u32::MAX),
        })
    }
}

/// For `deserialize_with`: a key that is present is `Some`, even when its value is null (which
/// [`Spanned`] keeps), so that an empty value is reported instead of read as a missing key.
fn given<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// A value that may be missing, and may be null when present.
pub(crate) type Field<T> = Option<Spanned<T>>;

/// A list of values (each of which may be null).
pub(crate) type List<T> = Field<Vec<Spanned<T>>>;

/// The top level. `COUNT` for a check that keeps no service (see [`Services`]).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile<const COUNT: bool = false> {
    #[serde(default, deserialize_with = "given")]
    pub services: Field<Services<COUNT>>,
    #[serde(default, deserialize_with = "given")]
    pub host: Field<RawHost>,
    #[serde(default, deserialize_with = "given")]
    pub ha: Field<RawHa>,
    #[serde(default, deserialize_with = "given")]
    pub ipvs: Field<RawIpvs>,
    /// Paths or globs of files holding more services (the main file only).
    #[serde(default, deserialize_with = "given")]
    pub include: List<String>,
}

/// `ha`: how this director shares its VIPs with others.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHa {
    #[serde(default, deserialize_with = "given")]
    pub mode: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub health_file: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub sync: Field<RawSync>,
    #[serde(default, deserialize_with = "given")]
    pub announce_device: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub announce: Field<String>,
}

/// `ha.sync`: the kernel's connection-sync daemon.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSync {
    #[serde(default, deserialize_with = "given")]
    pub interface: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub id: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub group: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub port: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub ttl: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub max_len: Field<String>,
}

/// `ipvs`: the table-wide settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIpvs {
    #[serde(default, deserialize_with = "given")]
    pub timeouts: Field<RawTimeouts>,
    /// By the kernel's names; each value keeps where it stands.
    #[serde(default, deserialize_with = "given")]
    pub sysctl: Field<std::collections::BTreeMap<String, Spanned<String>>>,
}

/// `ipvs.timeouts`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTimeouts {
    #[serde(default, deserialize_with = "given")]
    pub tcp: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub tcp_fin: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub udp: Field<String>,
}

/// `services`, validated entry by entry as the parser hands them over: the raw tree of a large
/// file is never held whole (10,000 services with 10 reals each would take ~50 MB as spanned
/// values, and allocating it cost more than parsing). With `COUNT`, each valid service is
/// counted and dropped (`lvsd check` keeps nothing of a service but its identity).
#[derive(Debug, Default)]
pub(crate) struct Services<const COUNT: bool = false>(pub Collected);

impl<'de, const COUNT: bool> Deserialize<'de> for Services<COUNT> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const COUNT: bool>;
        impl<'de, const COUNT: bool> Visitor<'de> for V<COUNT> {
            type Value = Services<COUNT>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of services")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Services<COUNT>, A::Error> {
                let mut checker = Checker::default();
                let mut out = Collected::counting(COUNT);
                while let Some(s) = seq.next_element::<Spanned<RawService>>()? {
                    checker.collect(s, &mut out);
                }
                out.problems = checker.problems;
                out.warnings = checker.warnings;
                Ok(Services(out))
            }
        }
        d.deserialize_seq(V::<COUNT>)
    }
}

/// The `host` section: what this machine is in the cluster.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHost {
    #[serde(default, deserialize_with = "given")]
    pub role: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub interface: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub vips: List<String>,
}

/// One entry of `services`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawService {
    #[serde(default, deserialize_with = "given")]
    pub name: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub address: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub fwmark: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub family: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub protocol: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub scheduler: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub forward: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub tunnel: Field<RawTunnel>,
    #[serde(default, deserialize_with = "given")]
    pub persistence: Field<Persistence>,
    #[serde(default, deserialize_with = "given")]
    pub flags: List<String>,
    #[serde(default, deserialize_with = "given")]
    pub drain_timeout: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub slow_start: Field<String>,
    // Boxed: a check is rare and large, and reals are many (the vector of them grows by moves).
    #[serde(default, deserialize_with = "given")]
    pub check: Option<Box<Spanned<RawCheck>>>,
    #[serde(default, deserialize_with = "given")]
    pub on_failure: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub fallback: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub quorum: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub reals: List<RawReal>,
}

/// A health check, on a service (for all its reals) or on one real (its fields override the
/// service's).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCheck {
    #[serde(rename = "type", default, deserialize_with = "given")]
    pub kind: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub port: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub path: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub expect_status: List<String>,
    #[serde(default, deserialize_with = "given")]
    pub expect_body: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub host: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub command: List<String>,
    #[serde(default, deserialize_with = "given")]
    pub interval: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub timeout: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub rise: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub fall: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub initial: Field<String>,
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
    #[serde(default, deserialize_with = "given")]
    pub address: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub weight: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub forward: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub tunnel: Field<RawTunnel>,
    #[serde(default, deserialize_with = "given")]
    pub max_connections: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub min_connections: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub slow_start: Field<String>,
    // Boxed: a check is rare and large, and reals are many (the vector of them grows by moves).
    #[serde(default, deserialize_with = "given")]
    pub check: Option<Box<Spanned<RawCheck>>>,
}

/// `tunnel: {type: gue, port: 6080, flags: [csum]}`: how a tunnel real's packets are
/// encapsulated (IP-in-IP when not given).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTunnel {
    #[serde(rename = "type", default, deserialize_with = "given")]
    pub kind: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub port: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub flags: List<String>,
}

/// `persistence: 300s` or `persistence: {timeout: 300s, netmask: 255.255.255.0}`.
#[derive(Debug)]
pub(crate) enum Persistence {
    /// Just the timeout. YAML has to guess the type of a value that is either a scalar or a
    /// mapping, so a scalar it reads as something other than text (`300`, `+300`, `0x12c`,
    /// `1.5`, `true`) arrives as that value: `typed`, with its spelling lost (validation
    /// takes it only when the file's bytes are the plain decimal it prints as).
    Short {
        /// The text, or the typed value printed.
        text: String,
        /// YAML read a number, boolean or float here rather than text.
        typed: bool,
    },
    /// The long form.
    Full(Box<PersistenceMap>),
}

impl Default for Persistence {
    fn default() -> Self {
        Persistence::Short {
            text: String::new(),
            typed: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PersistenceMap {
    #[serde(default, deserialize_with = "given")]
    pub timeout: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub netmask: Field<String>,
    #[serde(default, deserialize_with = "given")]
    pub engine: Field<String>,
}

impl<'de> Deserialize<'de> for Persistence {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        fn typed(text: String) -> Persistence {
            Persistence::Short { text, typed: true }
        }
        impl<'de> Visitor<'de> for V {
            type Value = Persistence;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a duration such as 300s, or a mapping with timeout and netmask")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Persistence, E> {
                Ok(typed(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Persistence, E> {
                Ok(typed(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Persistence, E> {
                // Debug keeps the fraction (`300.0`): never the text of a whole number.
                Ok(typed(format!("{v:?}")))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Persistence, E> {
                Ok(typed(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Persistence, E> {
                Ok(Persistence::Short {
                    text: v.to_owned(),
                    typed: false,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Persistence, A::Error> {
                let m = PersistenceMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Persistence::Full(Box::new(m)))
            }
        }
        d.deserialize_any(V)
    }
}
