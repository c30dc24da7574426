"""The HMI: GraphQL, REST, metrics and the operator web page."""
