pub mod bao;
pub mod cmd;
pub mod drill;
pub mod fault_proxy;
pub mod kube_api;
pub mod outcome;
pub mod s3;
pub mod work;
