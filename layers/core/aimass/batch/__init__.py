"""S3 drop-to-predict: batch files predicted row by row, nothing lost."""
