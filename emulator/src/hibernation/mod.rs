//! The Sprite lifecycle at work (reference §8): [`wake`] is what a request to a paused Sprite
//! goes through, and the account's running limit; [`sweeper`] is the background task that
//! pauses idle Sprites on time and boots the services of cold-woken ones. The state machine
//! itself is data, in `sprites::lifecycle`.

pub mod sweeper;
pub mod wake;
