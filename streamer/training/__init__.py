"""Training the built-in music model: a data set rendered here, the training loop, and the
weights the package ships. Data flows composer -> renders -> data set folder -> trainer -> model."""
