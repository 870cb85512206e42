//! Splitting a DPDK-style command line: EAL options before `--`, the application's after.

/// Returns (EAL argv with the program name first, application argv with the program name first).
/// Without `--`, everything belongs to the application, so `--help` works without EAL.
pub fn split_eal_args(argv: Vec<String>) -> (Vec<String>, Vec<String>) {
    let prog = argv.first().cloned().unwrap_or_default();
    match argv.iter().position(|a| a == "--") {
        Some(i) => {
            let eal = argv[..i].to_vec();
            let mut app = vec![prog];
            app.extend_from_slice(&argv[i + 1..]);
            (eal, app)
        }
        None => (vec![prog], argv),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn splits_at_the_first_double_dash() {
        let (eal, app) = split_eal_args(v(&["p", "-l", "2-5", "--", "--port", "0", "--", "x"]));
        assert_eq!(eal, v(&["p", "-l", "2-5"]));
        assert_eq!(app, v(&["p", "--port", "0", "--", "x"]));
    }

    #[test]
    fn without_double_dash_all_is_application() {
        let (eal, app) = split_eal_args(v(&["p", "--help"]));
        assert_eq!(eal, v(&["p"]));
        assert_eq!(app, v(&["p", "--help"]));
    }
}
