//! How a target reads its input:
//!
//! ```text
//! octet 0     configuration flags (each target says what its bits mean)
//! octets 1..  the peer's bytes, cut into reads:
//!               FF FF   one FF octet of data
//!               FF FE   the read ends here, and the idle timeout fires after it
//!               FF d    the read ends here; d is the next of the driver's decisions
//!               FF      (last octet) the read ends here
//! ```
//!
//! Decisions are used in order, whenever the driver has to decide something (a token
//! check's verdict, say), wherever they stood in the input; once they run out the driver
//! takes 0, 1, 2, ... in turn. So a seed stays readable text (`printf` writes the escapes),
//! and the fuzzer controls the reads, the timeouts and the verdicts.

/// Introduces a read boundary; doubled, it is one data octet.
pub const ESCAPE: u8 = 0xFF;
/// After [`ESCAPE`]: the idle timeout fires after this read.
pub const IDLE: u8 = 0xFE;

/// One read of the peer's bytes.
#[derive(Debug, Clone, Default)]
pub struct Read {
    /// The bytes of this read (possibly none).
    pub bytes: Vec<u8>,
    /// The idle timeout fires once this read has been handled.
    pub idle_after: bool,
}

/// A parsed input.
#[derive(Debug, Clone, Default)]
pub struct Script {
    /// Octet 0.
    pub flags: u8,
    /// The peer's bytes, read by read.
    pub reads: Vec<Read>,
    decisions: Vec<u8>,
    used: usize,
}

impl Script {
    /// Parses `data` as described in the module docs. Every input is a valid script.
    pub fn parse(data: &[u8]) -> Script {
        let Some((&flags, rest)) = data.split_first() else {
            return Script::default();
        };
        let mut script = Script {
            flags,
            ..Script::default()
        };
        let mut current = Vec::new();
        let mut bytes = rest.iter().copied();
        while let Some(byte) = bytes.next() {
            if byte != ESCAPE {
                current.push(byte);
                continue;
            }
            let next = bytes.next();
            if next == Some(ESCAPE) {
                current.push(ESCAPE);
                continue;
            }
            script.reads.push(Read {
                bytes: std::mem::take(&mut current),
                idle_after: next == Some(IDLE),
            });
            if let Some(decision) = next.filter(|&d| d != IDLE) {
                script.decisions.push(decision);
            }
        }
        if !current.is_empty() {
            script.reads.push(Read {
                bytes: current,
                idle_after: false,
            });
        }
        script
    }

    /// The flag bit `bit` (0 = least significant).
    pub fn flag(&self, bit: u8) -> bool {
        self.flags & (1 << bit) != 0
    }

    /// The next decision: the input's, then 0, 1, 2, ...
    pub fn decision(&mut self) -> u8 {
        let decision = match self.decisions.get(self.used) {
            Some(&d) => d,
            // Truncation intended: the defaults cycle.
            None => (self.used - self.decisions.len()) as u8,
        };
        self.used += 1;
        decision
    }

    /// All bytes of all reads, in order.
    pub fn data_len(&self) -> usize {
        self.reads.iter().map(|r| r.bytes.len()).sum()
    }
}
