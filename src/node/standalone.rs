//! Standalone mode: a scheduler and one in-process executor that joins it
//! over loopback QUIC, with a default group, processor and bind.

use chrono::Utc;
use rsa::PublicKey;

use super::scheduler::SchedulerNode;
use crate::domain::entities::{Bind, Group, Processor};
use crate::security::keys;
use crate::storage::StoreError;

/// Name of the processor standalone mode registers for its own executor.
pub const LOCAL_PROCESSOR: &str = "local";
const BOOTSTRAPPED: &str = "standalone_bootstrapped";

/// Creates, on the first start, group `default`, processor `local` and
/// bind `default-local` (weight 1). Later starts change nothing, so an
/// operator's edits or deletions stay, except that processor `local`, if it
/// exists, gets `executor_key`: the public key of the in-process executor
/// at security level 1.
pub fn bootstrap(node: &SchedulerNode, executor_key: Option<&PublicKey>) -> Result<(), StoreError> {
    let shared = &node.shared;
    let store = &shared.store;
    let executor_pem = executor_key.map(keys::public_pem);
    if store.flag(BOOTSTRAPPED)? {
        return register_executor_key(node, executor_pem);
    }
    let now = Utc::now();
    let group = match store.find_by_name::<Group>("default")? {
        Some(group) => group,
        None => store.create(Group {
            id: 0,
            name: "default".into(),
            description: "Created by delicate standalone".into(),
            tag: String::new(),
            created_time: now,
            updated_time: now,
        })?,
    };
    let processor = match store.find_by_name::<Processor>(LOCAL_PROCESSOR)? {
        Some(processor) => processor,
        None => store.create(Processor {
            id: 0,
            name: LOCAL_PROCESSOR.into(),
            description: "The executor inside delicate standalone".into(),
            tag: String::new(),
            host: "127.0.0.1".into(),
            machine_id: 0,
            public_key: executor_pem,
            created_time: now,
            updated_time: now,
        })?,
    };
    let bind = match store.find_by_name::<Bind>("default-local")? {
        Some(bind) => bind,
        None => store.create(Bind {
            id: 0,
            group_id: group.id,
            executor_id: processor.id,
            name: "default-local".into(),
            weight: 1,
            created_time: now,
            updated_time: now,
        })?,
    };
    store.set_flag(BOOTSTRAPPED)?;
    store.flush_now()?;
    shared.register_group(group.id);
    shared.register_processor(processor);
    shared.directory.put_bind(bind);
    tracing::info!("standalone.bootstrapped group=default processor=local bind=default-local");
    Ok(())
}

/// Puts the in-process executor's public key on processor `local`, if the
/// processor exists and has another key.
fn register_executor_key(
    node: &SchedulerNode,
    executor_pem: Option<String>,
) -> Result<(), StoreError> {
    let shared = &node.shared;
    let Some(pem) = executor_pem else {
        return Ok(());
    };
    let Some(mut processor) = shared.store.find_by_name::<Processor>(LOCAL_PROCESSOR)? else {
        return Ok(());
    };
    if processor.public_key.as_deref() == Some(pem.as_str()) {
        return Ok(());
    }
    processor.public_key = Some(pem);
    processor.updated_time = Utc::now();
    shared.store.update(&processor)?;
    shared.store.flush_now()?;
    shared.register_processor(processor);
    tracing::info!("standalone.registered_executor_key processor=local");
    Ok(())
}
