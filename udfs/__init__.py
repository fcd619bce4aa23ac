"""Model pandas-UDF factories over Spark-free predict cores (classify, detect, segment, caption, embed)."""
