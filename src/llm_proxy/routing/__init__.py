"""Model name -> ordered candidate deployments."""
