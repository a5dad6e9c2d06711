"""One module (or package) per stage; each stage is a function over Arrow record batches."""
