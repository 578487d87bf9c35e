//! The entities operators manage and the records the scheduler keeps.
//!
//! The same types are stored (bincode) and sent as JSON; formats that differ
//! between the two (timestamps, `frequency`) pick their shape from the
//! serializer's `is_human_readable`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _};

use super::time_format;

/// Identifier of a group, processor, bind or task, assigned by the store.
pub type Id = u64;

/// An executor group: a service or business that tasks run for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub id: Id,
    pub name: String,
    pub description: String,
    pub tag: String,
    #[serde(with = "time_format")]
    pub created_time: DateTime<Utc>,
    #[serde(with = "time_format")]
    pub updated_time: DateTime<Utc>,
}

/// An executor processor: one machine or container running `delicate executor`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Processor {
    pub id: Id,
    pub name: String,
    pub description: String,
    pub tag: String,
    /// The address the executor advertises; never contains white space.
    pub host: String,
    /// 0..=1023: the worker bits of the snowflake ids of instances routed here.
    pub machine_id: u16,
    /// PEM public key of the executor, used at security level 1.
    pub public_key: Option<String>,
    #[serde(with = "time_format")]
    pub created_time: DateTime<Utc>,
    #[serde(with = "time_format")]
    pub updated_time: DateTime<Utc>,
}

/// A weighted link from a group to a processor; tasks name binds, not processors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bind {
    pub id: Id,
    pub group_id: Id,
    /// The processor this bind routes to.
    pub executor_id: Id,
    pub name: String,
    /// 0..=100; 0 drains the bind so it receives no new instances.
    pub weight: u8,
    #[serde(with = "time_format")]
    pub created_time: DateTime<Utc>,
    #[serde(with = "time_format")]
    pub updated_time: DateTime<Utc>,
}

/// How many times a task fires before it disables itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frequency {
    Once,
    CountDown { count: u64 },
    Repeat,
}

impl Frequency {
    /// The number of fires a fresh task with this frequency has left; `None` is unlimited.
    pub fn initial_count(self) -> Option<u64> {
        match self {
            Frequency::Once => Some(1),
            Frequency::CountDown { count } => Some(count),
            Frequency::Repeat => None,
        }
    }
}

/// JSON shape of [`Frequency`]: `{"mode":"count_down","count":3}`.
#[derive(Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
enum FrequencyJson {
    Once,
    CountDown { count: u64 },
    Repeat,
}

/// Stored shape of [`Frequency`]: bincode cannot read internally tagged enums.
#[derive(Serialize, Deserialize)]
enum FrequencyStored {
    Once,
    CountDown(u64),
    Repeat,
}

impl Serialize for Frequency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            match *self {
                Frequency::Once => FrequencyJson::Once,
                Frequency::CountDown { count } => FrequencyJson::CountDown { count },
                Frequency::Repeat => FrequencyJson::Repeat,
            }
            .serialize(s)
        } else {
            match *self {
                Frequency::Once => FrequencyStored::Once,
                Frequency::CountDown { count } => FrequencyStored::CountDown(count),
                Frequency::Repeat => FrequencyStored::Repeat,
            }
            .serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Frequency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let json = FrequencyJson::deserialize(d).map_err(|_| {
                D::Error::custom(
                    r#"frequency must be {"mode":"once"}, {"mode":"repeat"} or {"mode":"count_down","count":N}"#,
                )
            })?;
            Ok(match json {
                FrequencyJson::Once => Frequency::Once,
                FrequencyJson::CountDown { count } => Frequency::CountDown { count },
                FrequencyJson::Repeat => Frequency::Repeat,
            })
        } else {
            Ok(match FrequencyStored::deserialize(d)? {
                FrequencyStored::Once => Frequency::Once,
                FrequencyStored::CountDown(count) => Frequency::CountDown { count },
                FrequencyStored::Repeat => Frequency::Repeat,
            })
        }
    }
}

/// How a fire picks processors among a task's binds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dispatch {
    /// One bind per fire, by smooth weighted round-robin.
    #[default]
    Weighted,
    /// One instance per eligible bind per fire.
    Broadcast,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    #[default]
    Enabled,
    Disabled,
}

/// A command with a schedule, bound to processors through binds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: Id,
    pub name: String,
    pub description: String,
    pub command: String,
    pub frequency: Frequency,
    pub cron_expression: String,
    /// IANA zone the cron expression is read in.
    pub time_zone: String,
    /// Seconds; 0 means no timeout.
    pub timeout: u64,
    pub retry_times: u32,
    /// Seconds between the end of an attempt and the start of the next.
    pub retry_interval: u64,
    pub tag: String,
    pub binding_ids: Vec<Id>,
    pub maximum_parallel_runnable_num: u32,
    pub dispatch: Dispatch,
    /// Seconds: a missed slot younger than this fires once as a catch-up.
    pub misfire_grace: u64,
    pub env: BTreeMap<String, String>,
    pub run_as: Option<String>,
    /// Bytes written to the command's standard input (crontab `%` text).
    pub stdin: Option<String>,
    /// Address notified about runs, kept from an imported crontab's `MAILTO`.
    pub mailto: Option<String>,
    pub status: TaskStatus,
    /// Fires left before the task disables itself; `None` for `repeat`.
    pub remaining_count: Option<u64>,
    /// The instant `@every` intervals count from: when the schedule was last set.
    #[serde(with = "time_format")]
    pub schedule_anchor: DateTime<Utc>,
    #[serde(with = "time_format")]
    pub created_time: DateTime<Utc>,
    #[serde(with = "time_format")]
    pub updated_time: DateTime<Utc>,
}

impl Task {
    /// Builds an enabled, repeating task with the API's defaults: no
    /// timeout or retries, at most 1 running instance, weighted dispatch, a
    /// 60 s misfire grace, and every time set to `now`. The id is 0 until
    /// the store assigns one.
    pub fn enabled(
        name: String,
        command: &str,
        cron_expression: String,
        time_zone: &str,
        binding_ids: Vec<Id>,
        now: DateTime<Utc>,
    ) -> Task {
        Task {
            id: 0,
            name,
            description: String::new(),
            command: command.into(),
            frequency: Frequency::Repeat,
            cron_expression,
            time_zone: time_zone.into(),
            timeout: 0,
            retry_times: 0,
            retry_interval: 0,
            tag: String::new(),
            binding_ids,
            maximum_parallel_runnable_num: 1,
            dispatch: Dispatch::Weighted,
            misfire_grace: 60,
            env: BTreeMap::new(),
            run_as: None,
            stdin: None,
            mailto: None,
            status: TaskStatus::Enabled,
            remaining_count: None,
            schedule_anchor: now,
            created_time: now,
            updated_time: now,
        }
    }
}

/// Instance status, with the numeric codes fixed by the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceStatus {
    Running,
    Finished,
    AbnormalEnding,
    TimeoutEnding,
    ManualCancellation,
    Unknown,
}

impl InstanceStatus {
    pub const ALL: [InstanceStatus; 6] = [
        InstanceStatus::Running,
        InstanceStatus::Finished,
        InstanceStatus::AbnormalEnding,
        InstanceStatus::TimeoutEnding,
        InstanceStatus::ManualCancellation,
        InstanceStatus::Unknown,
    ];

    pub fn code(self) -> u8 {
        match self {
            InstanceStatus::Running => 1,
            InstanceStatus::Finished => 2,
            InstanceStatus::AbnormalEnding => 3,
            InstanceStatus::TimeoutEnding => 4,
            InstanceStatus::ManualCancellation => 5,
            InstanceStatus::Unknown => 81,
        }
    }

    pub fn from_code(code: u8) -> Option<InstanceStatus> {
        Self::ALL.into_iter().find(|status| status.code() == code)
    }

    /// The snake_case name used in JSON and in filters.
    pub fn name(self) -> &'static str {
        match self {
            InstanceStatus::Running => "running",
            InstanceStatus::Finished => "finished",
            InstanceStatus::AbnormalEnding => "abnormal_ending",
            InstanceStatus::TimeoutEnding => "timeout_ending",
            InstanceStatus::ManualCancellation => "manual_cancellation",
            InstanceStatus::Unknown => "unknown",
        }
    }

    /// Parses a filter value: the snake_case name or the numeric code.
    pub fn parse(text: &str) -> Option<InstanceStatus> {
        if let Ok(code) = text.parse::<u8>() {
            return Self::from_code(code);
        }
        Self::ALL.into_iter().find(|status| status.name() == text)
    }

    /// True for every status but Running. Unknown is final unless the
    /// executor later reports the real outcome.
    pub fn is_ended(self) -> bool {
        self != InstanceStatus::Running
    }
}

/// Why an instance was created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Cron,
    Manual,
    Retry,
    Misfire,
}

/// One run of a task, with snapshots of the task and processor it ran with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// Snowflake id; a string in JSON because it exceeds 2^53.
    #[serde(with = "id_text")]
    pub id: u64,
    pub task_id: Id,
    pub name: String,
    pub description: String,
    pub command: String,
    pub frequency: Frequency,
    pub cron_expression: String,
    pub maximum_parallel_runnable_num: u32,
    pub tag: String,
    pub status: InstanceStatus,
    #[serde(with = "time_format")]
    pub created_time: DateTime<Utc>,
    #[serde(with = "time_format")]
    pub updated_time: DateTime<Utc>,
    pub executor_processor_id: Option<Id>,
    pub executor_processor_name: String,
    pub executor_processor_host: String,
    pub bind_id: Option<Id>,
    /// The cron slot (or, for manual runs and retries, the instant) it was created for.
    #[serde(with = "time_format")]
    pub scheduled_time: DateTime<Utc>,
    pub trigger: Trigger,
    /// 1 for the first run, +1 for each retry.
    pub attempt: u32,
    #[serde(with = "time_format::option")]
    pub started_time: Option<DateTime<Utc>>,
    #[serde(with = "time_format::option")]
    pub finished_time: Option<DateTime<Utc>>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub reason: Option<String>,
}

/// Instance ids as decimal strings in JSON and integers in the store.
pub mod id_text {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(id: &u64, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(id)
        } else {
            s.serialize_u64(*id)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            text.parse()
                .map_err(|_| D::Error::custom(format!("invalid instance id {text:?}")))
        } else {
            u64::deserialize(d)
        }
    }
}
