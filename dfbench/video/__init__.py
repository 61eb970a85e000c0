"""The only code that runs ffmpeg or decodes media: probing, frame sampling, the fan-out engine."""
