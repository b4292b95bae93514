pub mod bao;
pub mod drill;
pub mod kube_api;
pub mod s3;
