"""One module per integration plugin, named as the plugin, each with `PLUGIN = <class>`."""
