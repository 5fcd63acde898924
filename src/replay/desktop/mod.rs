//! Desktop (RDP) recordings: the framebuffer replay ([`render`]) and what is
//! made from it — a PNG of one moment ([`png`]), frames at a fixed rate
//! ([`video`]) encoded to MP4 by ffmpeg ([`mp4`], fed through
//! [`timed_frames`] and [`frame_pipe`]), the changed regions a web
//! player draws ([`frames`]) — and the keystroke log of the recorded client
//! input ([`keystrokes`]).

mod frame_pipe;
pub mod frames;
pub mod keystrokes;
pub mod mp4;
mod planar;
pub mod png;
pub mod render;
mod timed_frames;
mod uncompressed;
pub mod video;
