package oneid.hadoop;

import org.apache.hadoop.fs.LocalFileSystem;

/** Hadoop's local file system (with its checksum files) over {@link NoForkRawLocalFileSystem}. */
public class NoForkLocalFileSystem extends LocalFileSystem {
  public NoForkLocalFileSystem() {
    super(new NoForkRawLocalFileSystem());
  }
}
