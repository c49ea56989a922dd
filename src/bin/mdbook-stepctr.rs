//! `mdbook-stepctr`: the book's preprocessor (src/book.rs), run by mdBook as book/book.toml says.
//! `mdbook-stepctr supports RENDERER` answers by its exit code; without arguments it reads
//! `[context, book]` as JSON on stdin and writes the rendered book on stdout.

use std::io::Read;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [cmd, renderer] = args.as_slice() {
        if cmd == "supports" {
            return if stepctr::book::supports(renderer) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
    }
    let mut input = String::new();
    let out = std::io::stdin()
        .read_to_string(&mut input)
        .map_err(anyhow::Error::from)
        .and_then(|_| stepctr::book::preprocess(&input));
    match out {
        Ok(book) => {
            print!("{book}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mdbook-stepctr: {e:#}");
            ExitCode::FAILURE
        }
    }
}
