"""consume and produce: the standalone Kinesis consumer and producer."""
