//! The README's recipes run: `docs/recipes.sh` starts a fresh server in a new directory and
//! runs the README's curl recipes in order (dates relative to now), checking what they did; and
//! every README block marked `<!-- recipe: NAME -->` must be, word for word, the script's block
//! of that name, so the README cannot drift from what was run.

use std::{path::Path, process::Command};

/// The blocks of `text` named by marker lines: (name, body).
fn marked_blocks(text: &str, readme: bool) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let marker = if readme {
            line.trim().strip_prefix("<!-- recipe: ")
        } else {
            line.trim().strip_prefix("# <!-- recipe: ")
        };
        let Some(name) = marker.and_then(|m| m.strip_suffix(" -->")) else {
            continue;
        };
        if readme {
            let fence = lines.next().unwrap_or_default();
            assert!(
                fence.starts_with("```"),
                "README: no code block after recipe {name}"
            );
        }
        let end = if readme { "```" } else { "# <!-- /recipe -->" };
        let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != end).collect();
        blocks.push((name.to_string(), body.join("\n")));
    }
    blocks
}

#[test]
fn the_readme_recipes_are_the_scripts_recipes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    let script = std::fs::read_to_string(root.join("docs/recipes.sh")).expect("recipes.sh");
    let in_readme = marked_blocks(&readme, true);
    let in_script = marked_blocks(&script, false);
    assert!(in_readme.len() >= 4, "README recipes: {in_readme:?}");
    for (name, body) in &in_readme {
        let script_body = in_script
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b)
            .unwrap_or_else(|| panic!("README recipe {name} is not in docs/recipes.sh"));
        assert_eq!(
            body, script_body,
            "README recipe {name} differs from docs/recipes.sh"
        );
    }
    assert_eq!(
        in_readme.len(),
        in_script.len(),
        "a recipe of the script is not in the README"
    );
}

#[test]
fn the_readme_recipes_run_on_a_fresh_server() {
    if Command::new("curl").arg("--version").output().is_err() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "the README recipes need curl under CI=true"
        );
        eprintln!("SKIPPED: the README recipes need curl");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = Command::new("bash")
        .arg(root.join("docs/recipes.sh"))
        .env("OMO", env!("CARGO_BIN_EXE_omo"))
        .env_remove("OMO_DATABASE_URL")
        .env_remove("OMO_LISTEN")
        .output()
        .expect("bash runs");
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.status.success(), "docs/recipes.sh failed:\n{output}");
    assert!(output.contains("all recipes ran"), "{output}");
}
