//! Desktop (RDP) recordings: the framebuffer replay ([`render`], started
//! at a keyframe by [`seek`], passing over what is drawn over by
//! [`overdraw`]) and what is
//! made from it — a PNG of one moment ([`png`]), frames at a fixed rate
//! ([`video`]) encoded to MP4 by ffmpeg ([`mp4`], fed through
//! [`timed_frames`] and [`frame_pipe`]), the changed regions a web
//! player draws ([`frames`]) — and the keystroke log of the recorded client
//! input ([`keystrokes`]).

mod bitmap_pdus;
mod frame_pipe;
pub mod frames;
pub mod keystrokes;
pub mod mp4;
mod overdraw;
mod planar;
pub mod png;
pub mod region;
pub mod render;
pub mod seek;
mod timed_frames;
mod uncompressed;
pub mod video;
