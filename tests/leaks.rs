mod common;

fn main() {
    common::run_tests(vec![], true);
}
