//! A disk's or snapshot's lineage, drawn: which snapshots were taken of
//! which disks and which disks were made from which snapshots, from the
//! oldest ancestor the caller may see down to every descendant it may see
//! (at most [`MAX_NODES`]). Drawn as an SVG on the server, with the same
//! facts as a list for screen readers.

use std::collections::{HashMap, VecDeque};

use coffer_service::ServiceError;
use coffer_wire::ListParams;
use maud::{Markup, html};

use super::first_page;
use crate::Console;
use crate::session::Session;

/// The most nodes one graph draws.
pub const MAX_NODES: usize = 60;

/// Where a graph starts (drawn highlighted).
pub enum Start {
    /// A disk id.
    Disk(String),
    /// A snapshot id.
    Snapshot(String),
}

/// One node.
struct Node {
    id: String,
    name: String,
    kind: &'static str,
    depth: usize,
}

/// What a failed look-up means while walking: a node the caller may not
/// see (or that is gone) ends the walk there; any other error is the page's.
fn hidden(e: &ServiceError) -> bool {
    matches!(e.status(), 403 | 404)
}

/// The graph around `start`, as markup.
pub async fn graph(c: &Console, s: &Session, start: Start) -> Result<Markup, ServiceError> {
    let svc = &c.service;
    let caller = &s.caller;
    // Up: the oldest visible ancestor.
    let mut top = match &start {
        Start::Disk(id) => Start::Disk(id.clone()),
        Start::Snapshot(id) => Start::Snapshot(id.clone()),
    };
    for _ in 0..MAX_NODES {
        let parent = match &top {
            Start::Disk(id) => match svc.get_disk(caller, id).await {
                Ok(d) => d.source_snapshot_id.map(Start::Snapshot),
                Err(e) if hidden(&e) => None,
                Err(e) => return Err(e),
            },
            Start::Snapshot(id) => match svc.get_snapshot(caller, id).await {
                Ok(sn) => sn.source_disk_id.map(Start::Disk),
                Err(e) if hidden(&e) => None,
                Err(e) => return Err(e),
            },
        };
        match parent {
            Some(p) => {
                let visible = match &p {
                    Start::Disk(id) => svc.get_disk(caller, id).await.map(|_| ()),
                    Start::Snapshot(id) => svc.get_snapshot(caller, id).await.map(|_| ()),
                };
                match visible {
                    Ok(()) => top = p,
                    Err(e) if hidden(&e) => break,
                    Err(e) => return Err(e),
                }
            }
            None => break,
        }
    }
    // Down, breadth first.
    let mut nodes: Vec<Node> = Vec::new();
    let mut edges: Vec<(usize, usize)> = Vec::new();
    let mut queue: VecDeque<(Start, usize, Option<usize>)> = VecDeque::from([(top, 0, None)]);
    while let Some((at, depth, parent)) = queue.pop_front() {
        if nodes.len() >= MAX_NODES {
            break;
        }
        let (node, children) = match at {
            Start::Disk(id) => {
                let d = match svc.get_disk(caller, &id).await {
                    Ok(d) => d,
                    Err(e) if hidden(&e) => continue,
                    Err(e) => return Err(e),
                };
                let snaps = svc
                    .list_snapshots(
                        caller,
                        ListParams {
                            source_disk: Some(d.id.clone()),
                            ..first_page()
                        },
                    )
                    .await?;
                (
                    Node {
                        id: d.id,
                        name: d.name,
                        kind: "disk",
                        depth,
                    },
                    snaps
                        .items
                        .into_iter()
                        .map(|sn| Start::Snapshot(sn.id))
                        .collect::<Vec<_>>(),
                )
            }
            Start::Snapshot(id) => {
                let sn = match svc.get_snapshot(caller, &id).await {
                    Ok(sn) => sn,
                    Err(e) if hidden(&e) => continue,
                    Err(e) => return Err(e),
                };
                let disks = svc
                    .list_disks(
                        caller,
                        ListParams {
                            source_snapshot: Some(sn.id.clone()),
                            ..first_page()
                        },
                    )
                    .await?;
                (
                    Node {
                        id: sn.id,
                        name: sn.name,
                        kind: "snapshot",
                        depth,
                    },
                    disks
                        .items
                        .into_iter()
                        .map(|d| Start::Disk(d.id))
                        .collect::<Vec<_>>(),
                )
            }
        };
        let me = nodes.len();
        nodes.push(node);
        if let Some(p) = parent {
            edges.push((p, me));
        }
        for ch in children {
            queue.push_back((ch, depth + 1, Some(me)));
        }
    }
    let current = match &start {
        Start::Disk(id) | Start::Snapshot(id) => id.clone(),
    };
    Ok(draw(&nodes, &edges, &current, !queue.is_empty()))
}

const W: usize = 190;
const H: usize = 46;
const GAP_X: usize = 56;
const GAP_Y: usize = 14;

/// The SVG (columns by depth, rows in order found) and its text twin.
fn draw(nodes: &[Node], edges: &[(usize, usize)], current: &str, truncated: bool) -> Markup {
    let mut rows: HashMap<usize, usize> = HashMap::new();
    let mut pos = Vec::with_capacity(nodes.len());
    for n in nodes {
        let r = rows.entry(n.depth).or_insert(0);
        pos.push((n.depth * (W + GAP_X) + 8, *r * (H + GAP_Y) + 8));
        *r += 1;
    }
    let width = pos.iter().map(|p| p.0 + W + 8).max().unwrap_or(0);
    let height = pos.iter().map(|p| p.1 + H + 8).max().unwrap_or(0);
    let label = format!(
        "Lineage: {} disks and snapshots, {} links",
        nodes.len(),
        edges.len()
    );
    let short = |s: &str| -> String {
        if s.chars().count() > 24 {
            format!("{}…", s.chars().take(23).collect::<String>())
        } else {
            s.to_string()
        }
    };
    html! {
        figure.lineage {
            svg #lineage-graph xmlns="http://www.w3.org/2000/svg" role="group" aria-label=(label)
                width=(width) height=(height) viewBox={ "0 0 " (width) " " (height) } {
                defs {
                    marker #arrow viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse" {
                        path d="M 0 0 L 10 5 L 0 10 z" class="arrowhead" {}
                    }
                }
                @for (a, b) in edges {
                    @let (ax, ay) = pos[*a];
                    @let (bx, by) = pos[*b];
                    path.edge d=(format!("M {} {} C {} {}, {} {}, {} {}",
                        ax + W, ay + H / 2,
                        ax + W + GAP_X / 2, ay + H / 2,
                        bx - GAP_X / 2, by + H / 2,
                        bx, by + H / 2)) marker-end="url(#arrow)" {}
                }
                @for (i, n) in nodes.iter().enumerate() {
                    @let (x, y) = pos[i];
                    a href={ "/console/" (n.kind) "s/" (n.id) } {
                        g class={ "node " (n.kind) @if n.id == current { " current" } } data-id=(n.id) {
                            title { (n.kind) " " (n.name) " (" (n.id) ")" }
                            rect x=(x) y=(y) width=(W) height=(H) rx="6" {}
                            text x=(x + 10) y=(y + 19) class="name" { (short(&n.name)) }
                            text x=(x + 10) y=(y + 36) class="kind" { (n.kind) " · " (n.id) }
                        }
                    }
                }
            }
            figcaption {
                details {
                    summary { "The lineage as text" }
                    ul #lineage-text {
                        @for (a, b) in edges {
                            li { (nodes[*a].kind) " " (nodes[*a].name) " → " (nodes[*b].kind) " " (nodes[*b].name) }
                        }
                        @if edges.is_empty() { li { "Nothing came from it, and it came from nothing you can see." } }
                    }
                }
                @if truncated { p.note { "Only the first " (MAX_NODES) " are drawn." } }
            }
        }
    }
}
