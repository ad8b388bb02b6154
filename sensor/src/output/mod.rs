//! Event writers. EVE JSON lines use Suricata's field names so SIEM pipelines that
//! already read Suricata read otsensor.

pub mod eve;
