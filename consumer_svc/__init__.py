"""consumer_svc: Kafka consumer groups (processing pipeline, janitor, loyalty, benefits,
notifications, status fan-out). Its gRPC port (50053) serves health and reflection only.
"""
