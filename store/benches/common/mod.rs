//! What the store's benches share: flag parsing, a deterministic random source and the
//! names their generated traces use.

/// The value after `name` on the command line, parsed, or `default`.
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let argv: Vec<String> = std::env::args().collect();
    argv.iter()
        .position(|a| a == name)
        .and_then(|i| argv.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// splitmix64: deterministic, dependency-free randomness.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub const SERVICES: [&str; 6] = [
    "frontend",
    "checkout",
    "payments",
    "inventory",
    "shipping",
    "users",
];
pub const ROUTES: [&str; 5] = [
    "/api/orders/{id}",
    "/api/cart",
    "/api/pay",
    "/api/stock/{sku}",
    "/api/users/{id}",
];
