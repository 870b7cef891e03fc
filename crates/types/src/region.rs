//! The deployment's regions and their zones. Disks are zonal; snapshots,
//! images and keys are regional. A default deployment has region `local` with
//! zones `local-a`, `local-b` and `local-c`; the config file can name others.

use serde::{Deserialize, Serialize};

/// One region and its zones, as written in the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    /// Region name, e.g. `local` or `eu-west`.
    pub name: String,
    /// Zone names, e.g. `local-a`.
    pub zones: Vec<String>,
    /// The region's own object store: a directory, or
    /// `s3://BUCKET[/PREFIX]?endpoint=URL` (default: the deployment's
    /// `--store` for the first region, `DATA_DIR/regions/NAME/objects` for
    /// the others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// The region's own root key, in a key file (made on first start), so
    /// that its key material is protected by a key no other region shares
    /// (default: the deployment's root key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_key_file: Option<std::path::PathBuf>,
    /// The region's own root key in a PKCS#11 token or HSM (a `pkcs11:`
    /// URI, its PIN from `COFFER_PKCS11_PIN`); not with `root_key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_key_uri: Option<String>,
}

/// Why a zone or region is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegionError {
    /// Unknown zone.
    #[error("unknown zone '{zone}': this deployment has zones {known}")]
    UnknownZone {
        /// The zone asked for.
        zone: String,
        /// The zones that exist, comma-separated.
        known: String,
    },
    /// Unknown region.
    #[error("unknown region '{region}': this deployment has regions {known}")]
    UnknownRegion {
        /// The region asked for.
        region: String,
        /// The regions that exist, comma-separated.
        known: String,
    },
    /// Config problem.
    #[error("invalid region configuration: {0}")]
    Invalid(String),
}

/// The validated set of regions of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Regions(Vec<RegionConfig>);

impl Default for Regions {
    fn default() -> Self {
        Self(vec![RegionConfig {
            name: "local".into(),
            zones: vec!["local-a".into(), "local-b".into(), "local-c".into()],
            store: None,
            root_key_file: None,
            root_key_uri: None,
        }])
    }
}

impl Regions {
    /// Validate a configured list: at least one region, each with a zone,
    /// every name a valid resource name, no name used twice.
    pub fn new(list: Vec<RegionConfig>) -> Result<Self, RegionError> {
        if list.is_empty() {
            return Err(RegionError::Invalid("at least one region is needed".into()));
        }
        let mut seen = std::collections::HashSet::new();
        for r in &list {
            crate::Name::new(&r.name)
                .map_err(|e| RegionError::Invalid(format!("region name: {e}")))?;
            if r.zones.is_empty() {
                return Err(RegionError::Invalid(format!(
                    "region '{}' has no zones",
                    r.name
                )));
            }
            if r.root_key_file.is_some() && r.root_key_uri.is_some() {
                return Err(RegionError::Invalid(format!(
                    "region '{}' names both root_key_file and root_key_uri: give one",
                    r.name
                )));
            }
            if !seen.insert(r.name.clone()) {
                return Err(RegionError::Invalid(format!(
                    "name '{}' used twice",
                    r.name
                )));
            }
            for z in &r.zones {
                crate::Name::new(z).map_err(|e| RegionError::Invalid(format!("zone name: {e}")))?;
                if !seen.insert(z.clone()) {
                    return Err(RegionError::Invalid(format!("name '{z}' used twice")));
                }
            }
        }
        Ok(Self(list))
    }

    /// All regions.
    pub fn all(&self) -> &[RegionConfig] {
        &self.0
    }

    /// The region that holds `zone`.
    pub fn region_of_zone(&self, zone: &str) -> Result<&str, RegionError> {
        self.0
            .iter()
            .find(|r| r.zones.iter().any(|z| z == zone))
            .map(|r| r.name.as_str())
            .ok_or_else(|| RegionError::UnknownZone {
                zone: zone.chars().take(80).collect(),
                known: self
                    .0
                    .iter()
                    .flat_map(|r| r.zones.iter().map(String::as_str))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Check that `region` exists.
    pub fn check_region(&self, region: &str) -> Result<(), RegionError> {
        if self.0.iter().any(|r| r.name == region) {
            Ok(())
        } else {
            Err(RegionError::UnknownRegion {
                region: region.chars().take(80).collect(),
                known: self
                    .0
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_has_local_zones() {
        let r = Regions::default();
        assert_eq!(r.region_of_zone("local-b").unwrap(), "local");
        let e = r.region_of_zone("mars-1").unwrap_err().to_string();
        assert!(e.contains("local-a, local-b, local-c"), "{e}");
    }

    #[test]
    fn rejects_duplicate_and_empty() {
        assert!(Regions::new(vec![]).is_err());
        let dup = RegionConfig {
            name: "r".into(),
            zones: vec!["r".into()],
            store: None,
            root_key_file: None,
            root_key_uri: None,
        };
        assert!(Regions::new(vec![dup]).is_err());
        let nozones = RegionConfig {
            name: "r".into(),
            zones: vec![],
            store: None,
            root_key_file: None,
            root_key_uri: None,
        };
        assert!(Regions::new(vec![nozones]).is_err());
    }
}
