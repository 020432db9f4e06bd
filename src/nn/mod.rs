//! Neural-network layers on top of the tape.
