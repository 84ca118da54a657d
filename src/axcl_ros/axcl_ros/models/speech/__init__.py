"""Speech stream processing without ROS: VAD segmentation (:mod:`.segmenter`, on a :mod:`.sample_tape`) and the
segment -> transcript pipeline with its worker thread (:mod:`.pipeline`), which delivers :mod:`.outcome` objects."""
