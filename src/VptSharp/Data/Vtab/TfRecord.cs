namespace VptSharp.Data.Vtab;

/// <summary>CRC-32C (Castagnoli), as TFRecord frames use it, and TFRecord's "masked" form of it.</summary>
public static class Crc32C
{
    static readonly uint[] Table = MakeTable();

    static uint[] MakeTable()
    {
        var t = new uint[256];
        for (uint i = 0; i < 256; i++)
        {
            uint c = i;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0x82F63B78u ^ (c >> 1) : c >> 1;
            t[i] = c;
        }
        return t;
    }

    public static uint Compute(ReadOnlySpan<byte> data)
    {
        uint c = 0xFFFFFFFFu;
        foreach (byte b in data) c = Table[(c ^ b) & 0xFF] ^ (c >> 8);
        return c ^ 0xFFFFFFFFu;
    }

    /// <summary>TFRecord's masked CRC: rotate right by 15 bits and add 0xa282ead8.</summary>
    public static uint Masked(ReadOnlySpan<byte> data)
    {
        uint c = Compute(data);
        return unchecked(((c >> 15) | (c << 17)) + 0xa282ead8u);
    }
}

/// <summary>
/// Reads TFRecord files: each record is a little-endian u64 length, the masked CRC-32C of those 8 bytes, the data,
/// and the masked CRC-32C of the data. Both CRCs are checked; a truncated or corrupt file stops with its name and offset.
/// </summary>
public static class TfRecordReader
{
    public static IEnumerable<byte[]> Read(string path)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        var header = new byte[12];
        var crc = new byte[4];
        long offset = 0;
        while (true)
        {
            int got = ReadFull(f, header);
            if (got == 0) yield break;
            if (got < 12) throw new InvalidDataException($"{path}: truncated TFRecord header at byte {offset}; the file is incomplete, prepare the dataset again");
            ulong length = BitConverter.ToUInt64(header, 0);
            if (BitConverter.ToUInt32(header, 8) != Crc32C.Masked(header.AsSpan(0, 8)))
                throw new InvalidDataException($"{path}: TFRecord length CRC mismatch at byte {offset}; not a TFRecord file or corrupt, prepare the dataset again");
            if (length > int.MaxValue) throw new InvalidDataException($"{path}: TFRecord of {length} bytes at byte {offset} is implausible; the file is corrupt");
            if ((long)length + 4 > f.Length - f.Position) // checked before allocating what a truncated file cannot hold
                throw new InvalidDataException($"{path}: truncated TFRecord at byte {offset}; the file is incomplete, prepare the dataset again");
            var data = new byte[(int)length];
            if (ReadFull(f, data) < data.Length || ReadFull(f, crc) < 4)
                throw new InvalidDataException($"{path}: truncated TFRecord at byte {offset}; the file is incomplete, prepare the dataset again");
            if (BitConverter.ToUInt32(crc, 0) != Crc32C.Masked(data))
                throw new InvalidDataException($"{path}: TFRecord data CRC mismatch at byte {offset}; the file is corrupt, prepare the dataset again");
            offset += 16 + data.Length;
            yield return data;
        }
    }

    /// <summary>Number of records, reading only the framing (length CRCs checked, data skipped).</summary>
    public static int Count(string path)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 12);
        var header = new byte[12];
        int count = 0;
        while (true)
        {
            long offset = f.Position;
            int got = ReadFull(f, header);
            if (got == 0) return count;
            if (got < 12 || BitConverter.ToUInt32(header, 8) != Crc32C.Masked(header.AsSpan(0, 8)))
                throw new InvalidDataException($"{path}: not a TFRecord file or corrupt at byte {offset}; prepare the dataset again");
            ulong length = BitConverter.ToUInt64(header, 0);
            // Compared before adding: a huge length would wrap the next position back into the file (and loop forever).
            if (length > (ulong)(f.Length - f.Position) || f.Position + (long)length + 4 > f.Length) throw new InvalidDataException($"{path}: truncated TFRecord at byte {offset}; the file is incomplete, prepare the dataset again");
            f.Position += (long)length + 4;
            count++;
        }
    }

    static int ReadFull(Stream s, byte[] buffer)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            int n = s.Read(buffer, total, buffer.Length - total);
            if (n == 0) break;
            total += n;
        }
        return total;
    }
}
