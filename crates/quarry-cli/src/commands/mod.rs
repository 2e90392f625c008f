//! The subcommands, one file each: its arguments and how it runs, translating
//! between the terminal and the engine (`quarry-core`, `quarry-app`).

pub mod ask;
pub mod audit;
pub mod bench;
pub mod chat;
pub mod check;
pub mod doctor;
pub mod encrypt;
pub mod eval;
pub mod extract;
pub mod fit;
pub mod forget;
pub mod index;
pub mod init;
pub mod mcp;
pub mod models;
pub mod ocr;
pub mod privacy;
pub mod provider;
pub mod reembed;
pub mod remove;
pub mod schemas;
pub mod search;
pub mod serve;
pub mod status;
pub mod summarize;
pub mod watch;
