//! The names the DNS responder has answered, and the pool address each one was given.
//!
//! The mapping only grows during a session (an address is never reused for another name),
//! so a captured connection to an address always means the name it was first given for.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::config::AddressPool;

/// Pool addresses handed out, by name and by address.
pub(crate) struct Names {
    pool: AddressPool,
    by_name: HashMap<String, u32>,
    names: Vec<String>,
}

impl Names {
    /// An empty mapping over `pool`.
    pub(crate) fn new(pool: AddressPool) -> Self {
        Self {
            pool,
            by_name: HashMap::new(),
            names: Vec::new(),
        }
    }

    /// The address for `name` (canonical), handing out the next one the first time;
    /// `None` once the pool is used up.
    pub(crate) fn address_for(&mut self, name: &str) -> Option<Ipv4Addr> {
        if let Some(&index) = self.by_name.get(name) {
            return self.pool.address(index);
        }
        let index = u32::try_from(self.names.len()).ok()?;
        let address = self.pool.address(index)?;
        self.by_name.insert(name.to_owned(), index);
        self.names.push(name.to_owned());
        Some(address)
    }

    /// The name `ip` was handed out for, if it was.
    pub(crate) fn name_for(&self, ip: Ipv4Addr) -> Option<&str> {
        let index = self.pool.index_of(ip)?;
        self.names.get(index as usize).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_name_keeps_its_address_until_the_pool_is_used_up() {
        let mut names = Names::new(AddressPool::new(Ipv4Addr::new(198, 18, 0, 0), 30).unwrap());
        assert_eq!(
            names.address_for("a.test"),
            Some(Ipv4Addr::new(198, 18, 0, 1))
        );
        assert_eq!(
            names.address_for("b.test"),
            Some(Ipv4Addr::new(198, 18, 0, 2))
        );
        assert_eq!(
            names.address_for("a.test"),
            Some(Ipv4Addr::new(198, 18, 0, 1))
        );
        assert_eq!(names.address_for("c.test"), None);
        assert_eq!(names.name_for(Ipv4Addr::new(198, 18, 0, 2)), Some("b.test"));
        assert_eq!(names.name_for(Ipv4Addr::new(198, 18, 0, 3)), None);
    }
}
