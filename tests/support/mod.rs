pub mod bao;
pub mod s3;
