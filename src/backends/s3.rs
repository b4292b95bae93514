//! S3-compatible target (aws-sdk-s3). Stage: execute (backend).
