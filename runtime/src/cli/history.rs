//! `strata history` (`image history`): an image's history entries, newest first, each
//! with the size of the layer it made, as docker prints them.

use super::args::HistoryArgs;
use super::images::Ctx;
use super::{format, template};
use anyhow::Result;
use serde_json::json;

const HISTORY_TABLE: &str = r"table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}";

/// The column title of each key of a `history` row, as docker titles them.
const HISTORY_TITLES: &[(&str, &str)] = &[
    ("ID", "IMAGE"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("CreatedBy", "CREATED BY"),
    ("Size", "SIZE"),
    ("Comment", "COMMENT"),
];

/// docker's width for CREATED BY when not --no-trunc.
const CREATED_BY_WIDTH: usize = 45;

pub fn history(ctx: &Ctx, args: HistoryArgs) -> Result<i32> {
    let image = ctx.store.resolve(&args.image)?;
    let config: serde_json::Value = serde_json::from_slice(&image.config_bytes).unwrap_or_default();
    let mut sizes = ctx.snapshots.layer_sizes(&image).unwrap_or_default().into_iter();
    let entries = config["history"].as_array().cloned().unwrap_or_default();
    let mut rows: Vec<(serde_json::Value, u64)> = entries
        .into_iter()
        .map(|entry| {
            let size = match entry["empty_layer"].as_bool() {
                Some(true) => 0,
                _ => sizes.next().unwrap_or(0),
            };
            (entry, size)
        })
        .collect();
    // Layers no entry tells of (an image without history) still show.
    rows.extend(sizes.map(|size| (json!({}), size)));
    rows.reverse();
    let id = image.id().to_string();
    let id = if args.no_trunc { id } else { image.id().hex()[..12].to_string() };
    if args.quiet {
        for (i, _) in rows.iter().enumerate() {
            println!("{}", if i == 0 { id.as_str() } else { "<missing>" });
        }
        return Ok(0);
    }
    let listing = template::Listing::parse(&args.format, HISTORY_TABLE)?;
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .enumerate()
        .map(|(i, (entry, size))| {
            let created = entry["created"].as_str();
            let created_by = entry["created_by"].as_str().unwrap_or_default().replace(['\t', '\n'], " ");
            let created_by = match args.no_trunc || created_by.chars().count() <= CREATED_BY_WIDTH {
                true => created_by,
                false => format!("{}…", created_by.chars().take(CREATED_BY_WIDTH - 1).collect::<String>()),
            };
            json!({
                "ID": if i == 0 { id.as_str() } else { "<missing>" },
                "CreatedAt": created,
                "CreatedSince": format::since(created),
                "CreatedBy": created_by,
                "Size": format::size(*size),
                "Comment": entry["comment"].as_str().unwrap_or_default(),
            })
        })
        .collect();
    listing.print(&rows, HISTORY_TITLES, &mut std::io::stdout().lock())?;
    Ok(0)
}
