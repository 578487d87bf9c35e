//! Snowflake instance ids: 41 bits of milliseconds since
//! 2024-01-01T00:00:00Z, 10 bits of the processor's machine id, 12 bits of
//! sequence. Ids from one generator strictly increase.

/// 2024-01-01T00:00:00Z in Unix milliseconds.
pub const EPOCH_MS: i64 = 1_704_067_200_000;
const MACHINE_BITS: u32 = 10;
const SEQUENCE_BITS: u32 = 12;
const MAX_SEQUENCE: u16 = (1 << SEQUENCE_BITS) - 1;
const MAX_MILLIS: i64 = (1 << 41) - 1;

/// The parts of an id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnowflakeParts {
    /// Unix milliseconds.
    pub unix_ms: i64,
    pub machine_id: u16,
    pub sequence: u16,
}

/// Generates ids for every machine id from one sequence counter.
///
/// When more than 4096 ids are asked for within one millisecond, or the
/// clock steps back, the generator borrows the next millisecond, so ids stay
/// unique and ordered and run at most briefly ahead of the clock.
#[derive(Debug, Default)]
pub struct SnowflakeGenerator {
    last_ms: i64,
    sequence: u16,
}

impl SnowflakeGenerator {
    /// Starts after `newest`, the largest id already handed out, if any.
    pub fn resume_after(newest: Option<u64>) -> SnowflakeGenerator {
        match newest.map(decode) {
            Some(parts) => SnowflakeGenerator {
                last_ms: parts.unix_ms - EPOCH_MS,
                sequence: MAX_SEQUENCE,
            },
            None => SnowflakeGenerator::default(),
        }
    }

    /// Returns the next id for `machine_id` (0..=1023) at Unix time `now_ms`.
    pub fn next_id(&mut self, machine_id: u16, now_ms: i64) -> u64 {
        let now = (now_ms - EPOCH_MS).clamp(0, MAX_MILLIS);
        if now > self.last_ms {
            self.last_ms = now;
            self.sequence = 0;
        } else if self.sequence == MAX_SEQUENCE {
            self.last_ms += 1;
            self.sequence = 0;
        } else {
            self.sequence += 1;
        }
        compose(self.last_ms, machine_id, self.sequence)
    }
}

fn compose(millis: i64, machine_id: u16, sequence: u16) -> u64 {
    let machine = u64::from(machine_id) & ((1 << MACHINE_BITS) - 1);
    ((millis as u64) << (MACHINE_BITS + SEQUENCE_BITS))
        | (machine << SEQUENCE_BITS)
        | u64::from(sequence)
}

pub fn decode(id: u64) -> SnowflakeParts {
    SnowflakeParts {
        unix_ms: (id >> (MACHINE_BITS + SEQUENCE_BITS)) as i64 + EPOCH_MS,
        machine_id: ((id >> SEQUENCE_BITS) & ((1 << MACHINE_BITS) - 1)) as u16,
        sequence: (id & u64::from(MAX_SEQUENCE)) as u16,
    }
}

/// The smallest id that can have been created at or after `unix_ms`.
pub fn first_id_at(unix_ms: i64) -> u64 {
    compose((unix_ms - EPOCH_MS).clamp(0, MAX_MILLIS), 0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip() {
        let mut generator = SnowflakeGenerator::default();
        let now = EPOCH_MS + 123_456;
        let id = generator.next_id(1023, now);
        assert_eq!(
            decode(id),
            SnowflakeParts {
                unix_ms: now,
                machine_id: 1023,
                sequence: 0
            }
        );
    }

    #[test]
    fn ids_increase_within_one_millisecond() {
        let mut generator = SnowflakeGenerator::default();
        let now = EPOCH_MS + 5;
        let ids: Vec<u64> = (0..10_000).map(|_| generator.next_id(7, now)).collect();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(decode(ids[4096]).unix_ms, now + 1);
    }

    #[test]
    fn clock_step_back_keeps_order() {
        let mut generator = SnowflakeGenerator::default();
        let first = generator.next_id(1, EPOCH_MS + 1000);
        let second = generator.next_id(1, EPOCH_MS + 10);
        assert!(second > first);
    }

    #[test]
    fn resume_continues_after_newest() {
        let mut generator = SnowflakeGenerator::default();
        let newest = generator.next_id(3, EPOCH_MS + 50_000);
        let mut resumed = SnowflakeGenerator::resume_after(Some(newest));
        assert!(resumed.next_id(3, EPOCH_MS + 40_000) > newest);
    }

    #[test]
    fn first_id_at_bounds_the_millisecond() {
        let mut generator = SnowflakeGenerator::default();
        let id = generator.next_id(1023, EPOCH_MS + 77);
        assert!(first_id_at(EPOCH_MS + 77) <= id);
        assert!(first_id_at(EPOCH_MS + 78) > id);
    }
}
