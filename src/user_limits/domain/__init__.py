"""The pure core: events, the UserLimit read model and the projection rules. No I/O, no clock, no AWS."""
