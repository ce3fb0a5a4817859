//! The native viewer (DESIGN.md §5, §9): reach a host ([`dial`]), run the session ([`run`]),
//! and show the remote screen in a window ([`window`]) or write it as PNG files when there is
//! no display ([`headless`]), with input from the user or a [`script`].

pub mod dial;
pub mod headless;
pub mod restart;
pub mod run;
pub mod script;
pub mod window;
