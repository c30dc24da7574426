"""GCN notices over Kafka turned into ToO OBs and planner triggers (`skyops run gcn`)."""
