//! Terminal (SSH) recordings: asciicast v2 for `asciinema play`
//! ([`asciicast`]), the keystroke log ([`keystrokes`]) and the pacing of a
//! replay in a terminal ([`playback`]). Pure functions over decoded events.

pub mod asciicast;
pub mod keystrokes;
pub mod playback;
