//! The demo hierarchy from vendored public data (see `data/README.md`): the world, the UN M49
//! regions and sub-regions from Unicode CLDR, the ISO 3166-1 countries under them, and the
//! ISO 3166-2 subdivisions (some nested) under their countries.

use std::collections::HashMap;

use anyhow::{anyhow, Context};
use forecastin_shared::{dto::EntityKind, ids::ROOT_ID};
use serde::Deserialize;
use serde_json::json;

use crate::hierarchy::{path, write::NewRow};

const REGIONS_JSON: &str = include_str!("../../../data/cldr/m49_regions.json");
const COUNTRIES_JSON: &str = include_str!("../../../data/iso-codes/iso_3166-1.json");
const SUBDIVISIONS_JSON: &str = include_str!("../../../data/iso-codes/iso_3166-2.json");

/// The M49 code of the world, which is our root.
const M49_WORLD: &str = "001";

#[derive(Deserialize)]
struct Regions {
    regions: Vec<Region>,
    /// ISO alpha-2 code -> M49 code of the sub-region that contains it.
    countries: HashMap<String, String>,
}

#[derive(Deserialize)]
struct Region {
    code: String,
    name: String,
    parent: Option<String>,
}

#[derive(Deserialize)]
struct Countries {
    #[serde(rename = "3166-1")]
    entries: Vec<Country>,
}

#[derive(Deserialize)]
struct Country {
    alpha_2: String,
    alpha_3: String,
    numeric: String,
    name: String,
    common_name: Option<String>,
    official_name: Option<String>,
}

#[derive(Deserialize)]
struct Subdivisions {
    #[serde(rename = "3166-2")]
    entries: Vec<Subdivision>,
}

#[derive(Deserialize)]
struct Subdivision {
    code: String,
    name: String,
    #[serde(rename = "type")]
    category: String,
    /// The parent subdivision: a full code (`GB-SCT`) or the part after the country (`IDF`).
    parent: Option<String>,
}

fn region_id(m49: &str) -> String {
    if m49 == M49_WORLD {
        ROOT_ID.to_owned()
    } else {
        format!("m49-{m49}")
    }
}

/// An entity before its place in the tree is known.
struct Node {
    id: String,
    parent_id: Option<String>,
    kind: EntityKind,
    name: String,
    attributes: serde_json::Value,
}

/// Every demo entity with its path and depth, parents before children.
pub fn demo_rows() -> anyhow::Result<Vec<NewRow>> {
    let regions: Regions = serde_json::from_str(REGIONS_JSON).context("m49_regions.json")?;
    let countries: Countries = serde_json::from_str(COUNTRIES_JSON).context("iso_3166-1.json")?;
    let subdivisions: Subdivisions =
        serde_json::from_str(SUBDIVISIONS_JSON).context("iso_3166-2.json")?;

    let mut nodes = vec![Node {
        id: ROOT_ID.to_owned(),
        parent_id: None,
        kind: EntityKind::World,
        name: "World".to_owned(),
        attributes: json!({ "m49": M49_WORLD }),
    }];
    nodes.extend(
        regions
            .regions
            .iter()
            .filter(|region| region.code != M49_WORLD)
            .map(|region| Node {
                id: region_id(&region.code),
                parent_id: Some(region_id(region.parent.as_deref().unwrap_or(M49_WORLD))),
                kind: EntityKind::Region,
                name: region.name.clone(),
                attributes: json!({ "m49": region.code }),
            }),
    );
    nodes.extend(countries.entries.iter().map(|country| {
        Node {
            id: country.alpha_2.clone(),
            parent_id: Some(region_id(
                regions
                    .countries
                    .get(&country.alpha_2)
                    .map_or(M49_WORLD, String::as_str),
            )),
            kind: EntityKind::Country,
            name: country
                .common_name
                .clone()
                .unwrap_or_else(|| country.name.clone()),
            attributes: json!({
                "alpha_3": country.alpha_3,
                "numeric": country.numeric,
                "official_name": country.official_name.as_deref().unwrap_or(&country.name),
            }),
        }
    }));
    nodes.extend(subdivisions.entries.iter().map(|subdivision| {
        let country = subdivision.code.split('-').next().unwrap_or_default();
        let parent_id = match &subdivision.parent {
            Some(parent) if parent.contains('-') => parent.clone(),
            Some(parent) => format!("{country}-{parent}"),
            None => country.to_owned(),
        };
        Node {
            id: subdivision.code.clone(),
            parent_id: Some(parent_id),
            kind: EntityKind::Subdivision,
            name: subdivision.name.clone(),
            attributes: json!({ "type": subdivision.category }),
        }
    }));
    place(nodes)
}

/// Works out every node's path from the parent links and orders parents first.
fn place(nodes: Vec<Node>) -> anyhow::Result<Vec<NewRow>> {
    let parent_of: HashMap<&str, Option<&str>> = nodes
        .iter()
        .map(|node| (node.id.as_str(), node.parent_id.as_deref()))
        .collect();
    let path_of = |id: &str| -> anyhow::Result<String> {
        let mut chain = vec![id];
        let mut current = id;
        while let Some(parent) = parent_of
            .get(current)
            .ok_or_else(|| anyhow!("`{current}` is referenced as a parent but does not exist"))?
        {
            if chain.len() > 64 {
                anyhow::bail!("the parent links around `{id}` form a cycle");
            }
            chain.push(parent);
            current = parent;
        }
        chain.reverse();
        Ok(chain
            .iter()
            .skip(1)
            .fold(path::root_path(chain[0]), |p, id| path::child_path(&p, id)))
    };
    let mut rows = nodes
        .iter()
        .map(|node| {
            let path = path_of(&node.id)?;
            Ok(NewRow {
                depth: path::ids(&path).count() as i64 - 1,
                path,
                id: node.id.clone(),
                parent_id: node.parent_id.clone(),
                kind: node.kind,
                name: node.name.clone(),
                attributes: node.attributes.to_string(),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    rows.sort_by(|a, b| (a.depth, &a.path).cmp(&(b.depth, &b.path)));
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_hierarchy_is_the_real_one() {
        let rows = demo_rows().unwrap();
        let by_id: HashMap<&str, &NewRow> = rows.iter().map(|r| (r.id.as_str(), r)).collect();
        assert_eq!(
            rows.len(),
            1 + 28 + 249 + 5127,
            "root, regions, countries, subdivisions"
        );
        assert_eq!(by_id["FR"].path, "/world/m49-150/m49-155/FR/");
        assert_eq!(
            by_id["FR-75"].path,
            "/world/m49-150/m49-155/FR/FR-IDF/FR-75/"
        );
        assert_eq!(by_id["FR-75"].name, "Paris");
        assert_eq!(by_id["GB-ABD"].parent_id.as_deref(), Some("GB-SCT"));
        assert_eq!(by_id["m49-150"].name, "Europe");
    }

    #[test]
    fn parents_come_before_their_children() {
        let rows = demo_rows().unwrap();
        let mut seen = std::collections::HashSet::new();
        for row in &rows {
            if let Some(parent) = &row.parent_id {
                assert!(seen.contains(parent.as_str()), "{} before {parent}", row.id);
            }
            seen.insert(row.id.as_str());
        }
    }
}
