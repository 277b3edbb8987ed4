"""sslsep: self-supervised audio representations from automatically separated sound scenes."""

__version__ = "0.1.0"
