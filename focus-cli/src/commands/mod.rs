//! One module per subcommand of `focus`: its arguments (`Args`) and its `run`.

pub mod bench;
pub mod generate;
pub mod inspect;
pub mod memory;
pub mod plot_log;
pub mod ppl;
pub mod probe;
pub mod retrieval;
pub mod serve;
pub mod train;
