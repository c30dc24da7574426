"""The pure core of the VES sync: OB content from planned blocks, plan precedence, VES checks and health."""
